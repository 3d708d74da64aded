"""What every throwaway server process of the test fixtures can do: stop, crash, hang, come back."""

from __future__ import annotations

import signal
import subprocess
from typing import Any, Self


class ServerProcess:
    """Mixin for fixtures that own one server subprocess in `self.process`.

    Subclasses provide `start()` (which must set `self.process` and return self once the
    server answers); the fault-injection verbs here are shared so every fixture offers
    the same ones with the same meaning.
    """

    process: subprocess.Popen[Any] | None

    def start(self) -> Self:
        raise NotImplementedError

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self, sig: int = signal.SIGTERM) -> None:
        """Terminate (or send `sig`), then kill if it has not exited within 5 s."""
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def kill(self) -> None:
        """SIGKILL: what a crash looks like to clients."""
        self.stop(signal.SIGKILL)

    def restart(self) -> None:
        self.stop()
        self.start()

    def freeze(self) -> None:
        """SIGSTOP: the port stays open but nothing answers (timeouts, not refusals)."""
        if self.process is not None:
            self.process.send_signal(signal.SIGSTOP)

    def thaw(self) -> None:
        if self.process is not None:
            self.process.send_signal(signal.SIGCONT)
