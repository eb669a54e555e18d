"""Plain integer counters the hot path bumps; exporters read them at scrape time."""

from __future__ import annotations


class Stats:
    __slots__ = (
        "udp_queries",
        "tcp_queries",
        "tcp_connections",
        "tcp_rejected",
        "tcp_timeouts",
        "udp_send_errors",
        "errors",
        "derived_hits",
        "answer_hits",
        "memo_hits",
        "memo_misses",
        "memo_evictions",
        "splice_hits",
        "splice_misses",
        "splice_evictions",
        "rrl_dropped",
        "rrl_slipped",
        "tcp_write_timeouts",
        "tcp_evicted",
        "objects_kept",
        "config_reloads_rejected",
        "config_restart_needed",
        "spawner_deaths",
    )

    def __init__(self) -> None:
        self.udp_queries = 0
        self.tcp_queries = 0
        self.tcp_connections = 0
        self.tcp_rejected = 0  # over tcp_max_connections
        self.tcp_timeouts = 0  # closed idle
        self.udp_send_errors = 0
        self.errors = 0  # internal errors (bugs), never malformed input
        self.derived_hits = 0  # answered from the registry's derived memo (negative answers)
        self.answer_hits = 0  # answered from the registry's pre-rendered answers
        # The reply memo (kdns.server.replymemo): UDP queries answered from a kept reply
        # (counted in answer_hits or derived_hits too), those it was asked for and did not
        # hold, and kept replies dropped when a full memo started afresh.
        self.memo_hits = 0
        self.memo_misses = 0
        self.memo_evictions = 0
        # First sights answered by a splice (kdns.server.splices): misses of the answers dict
        # and of the derived memo, as the standard path would have counted them.
        self.splice_hits = 0
        self.splice_misses = 0  # memo misses while splices were on that none answered
        self.splice_evictions = 0  # splices dropped when a full table started afresh
        self.rrl_dropped = 0  # UDP responses not sent (response rate limiting)
        self.rrl_slipped = 0  # ... sent truncated instead (RRL slip)
        self.tcp_write_timeouts = 0  # TCP clients that did not read their answers in time
        self.tcp_evicted = 0  # idle TCP connections closed for a newcomer (limit reached)
        self.objects_kept = 0  # --objects reloads that read no objects: last good ones kept
        self.config_reloads_rejected = 0  # config reloads refused whole (the old one runs on)
        self.config_restart_needed = 0  # reloads that changed settings only a restart applies
        self.spawner_deaths = 0  # the worker spawner died: kdns stops so the pod restarts

    def as_dict(self) -> dict[str, int]:
        return {name: getattr(self, name) for name in self.__slots__}
