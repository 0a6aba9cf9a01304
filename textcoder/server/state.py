"""What every route of one server shares: its configuration, the model ids it answers to and
the pool of engine copies."""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from ..backends.llama import LocalEngine
from .pool import EnginePool

#: default limit on a request body: far more text than any local model's context holds
DEFAULT_MAX_BODY = 4 * 1024 * 1024


@dataclass
class ServerConfig:
    """What `textcoder serve` was started with."""

    served_names: Sequence[str]
    api_key: str | None = None
    max_body_bytes: int = DEFAULT_MAX_BODY
    #: CPU threads shared by the engines: each busy one gets threads // busy (None: fixed)
    threads: int | None = None
    created: int = field(default_factory=lambda: int(time.time()))
    #: seconds requests in flight may still run after SIGTERM or Ctrl-C, then are cancelled
    shutdown_grace: float = 3.0


class ServerState:
    """The engines and settings behind the routes."""

    def __init__(self, engines: Sequence[LocalEngine], config: ServerConfig) -> None:
        self.config = config
        self.names = list(config.served_names)
        #: tokenizer, template and limits: the same in every copy
        self.engine = engines[0]
        self.pool = EnginePool(engines, config.threads)
        try:
            self.created = int(os.path.getmtime(self.engine.info.path))
        except OSError:
            self.created = config.created
