"""`make demo` and `make dev`: kuik's whole stack on one machine, no cluster, no containers.

- `kuik_testing.demo.manifests`: the documents, config and AdmissionReviews (pure data);
- `kuik_testing.demo.stack`: `LocalStack`, redis-server + two docker-registry + the three services
  as local processes in local mode;
- `kuik_testing.demo.scenario`: `run_scenario(target, narrator)`, the narrated steps, usable against
  any stack (`Target`), so the docker-compose test runs the very same scenario;
- `python -m kuik_testing.demo [dev]`: the two commands.

It reuses `kuik_testing`'s real servers and synthetic images (no internet needed), which is
why it lives in kuikcore rather than in a top-level package of its own: importable, typed and
linted like the rest, runnable as `uv run python -m kuik_testing.demo` from any directory.
"""

from kuik_testing.demo.scenario import Narrator, StepFailed, Target, run_scenario
from kuik_testing.demo.stack import LocalStack, Ports

__all__ = ["LocalStack", "Narrator", "Ports", "StepFailed", "Target", "run_scenario"]
