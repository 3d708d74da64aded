"""Every Redis key kuik uses, built in one place so the prefix and the patterns never drift.

docs/architecture.md lists these patterns with their type, bound and writer; change both together.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["DEFAULT_PREFIX", "KeySpace"]

DEFAULT_PREFIX = "kuik:"


@dataclass(frozen=True, slots=True)
class KeySpace:
    """Key names under one prefix (config `redis.keyPrefix`), so several kuik installs can share a Redis."""

    prefix: str = DEFAULT_PREFIX

    def __post_init__(self) -> None:
        if any(c.isspace() for c in self.prefix):
            raise ValueError(f"Redis key prefix {self.prefix!r}: must not contain whitespace")

    # job queues ---------------------------------------------------------------------------
    def lane(self, queue: str, lane: str) -> str:
        """Stream of a queue lane's unprocessed and in-flight jobs (acked entries are deleted)."""
        return f"{self.prefix}q:{queue}:{lane}"

    def delayed(self, queue: str, lane: str) -> str:
        """ZSET of jobs waiting for their retry time (score: due time in ms)."""
        return f"{self.prefix}q:{queue}:{lane}:delayed"

    def dead(self, queue: str) -> str:
        """Stream of jobs that failed too often, with their last error."""
        return f"{self.prefix}q:{queue}:dead"

    def job(self, queue: str, job_key: str) -> str:
        """String marking a job as pending (queued, delayed or in flight): de-duplication."""
        return f"{self.prefix}q:{queue}:job:{job_key}"

    # locks and leadership ------------------------------------------------------------------
    def lock(self, name: str) -> str:
        return f"{self.prefix}lock:{name}"

    def fence(self, name: str) -> str:
        """Counter handing out fencing tokens for the lock of the same name."""
        return f"{self.prefix}fence:{name}"

    # availability board --------------------------------------------------------------------
    def board_image(self, reference: str) -> str:
        return f"{self.prefix}board:image:{reference}"

    def board_registry(self, host: str) -> str:
        return f"{self.prefix}board:registry:{host}"

    def reroute_event(self, cluster_id: str, subject: str) -> str:
        """String (TTL: the Event window) marking that a `Rerouted` Event covers `subject` (a
        workload's reroute, or one Pod), so a new leader does not record it again."""
        return f"{self.prefix}events:rerouted:{cluster_id}:{subject}"

    def health_targets(self) -> str:
        """ZSET of the registry hosts some service wants probed (score: last wanted, unix s)."""
        return f"{self.prefix}health:targets"

    # shared budgets ------------------------------------------------------------------------
    def rate(self, name: str) -> str:
        """GCRA state (theoretical arrival time) of one rate limit, e.g. `monitoring:<host>`."""
        return f"{self.prefix}rate:{name}"

    def semaphore(self, name: str) -> str:
        """ZSET of the leases currently holding slots of a distributed semaphore."""
        return f"{self.prefix}sem:{name}"

    def semaphore_released(self, name: str) -> str:
        """List of release tokens that a semaphore's waiters block on (BLPOP)."""
        return f"{self.prefix}sem:{name}:released"

    # multi-cluster usage -------------------------------------------------------------------
    def usage(self, cluster_id: str) -> str:
        return f"{self.prefix}usage:{cluster_id}"

    def usage_clusters(self) -> str:
        return f"{self.prefix}usage-clusters"
