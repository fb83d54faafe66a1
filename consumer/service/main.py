"""`capi-consumer run`: the service's entry point, for one process or a supervisor of workers.

The command line only parses its arguments and reads the settings; this module sets the
process up (health and metrics endpoint, signals, garbage collection), runs the service until
a signal or a fatal error, and answers the process's exit code: 0 after a clean stop, 1 after
a fatal error, 3 when another instance took this one's transactional id. A port that cannot be
listened on is a configuration error (`ConfigError`, exit 2 at the command line).
"""

from __future__ import annotations

import logging
import signal
import socket

from consumer.errors import CapiConsumerError, ConfigError, FencedError
from consumer.settings import Settings

__all__ = ["EXIT_FATAL", "EXIT_FENCED", "run_service"]

log = logging.getLogger("consumer")

EXIT_FATAL = 1
EXIT_FENCED = 3


def run_service(
    settings: Settings, *, worker: int | None = None, metrics_fd: int | None = None
) -> int:
    """Run until SIGTERM or SIGINT (drained, 0) or a fatal error; return the exit code.

    `worker`, `metrics_fd`: set by the supervisor of `CAPI_WORKERS` for each worker process."""
    if settings.workers > 1 and worker is None:
        return _supervise(settings)
    from prometheus_client import disable_created_metrics

    from consumer.ops.endpoint import HealthServer
    from consumer.ops.metrics import Metrics
    from consumer.service.loop import build_service

    disable_created_metrics()  # type: ignore[no-untyped-call]  # no `_created` series
    metrics = Metrics()
    app = build_service(settings, metrics, on_ready=_settle_in)
    if settings.metrics_port:
        try:
            server = HealthServer(
                settings.metrics_port,
                metrics.registry,
                app.monitor.alive_problems,
                app.monitor.ready_problems,
                listening=None if metrics_fd is None else socket.socket(fileno=metrics_fd),
            )
        except OSError as exc:
            raise ConfigError(
                "CAPI_METRICS_PORT",
                f"{settings.metrics_port}: cannot listen: {exc.strerror or exc}",
            ) from exc
        server.start()
        log.info("metrics and health on :%d (/metrics, /healthz, /readyz)", settings.metrics_port)

    def on_signal(signum: int, _frame: object) -> None:
        log.info("signal %s: draining", signal.Signals(signum).name)
        app.stop()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        app.run()
    except FencedError as exc:
        log.error("stopping: %s", exc)
        return EXIT_FENCED
    except CapiConsumerError as exc:
        log.error("stopping: %s", exc)
        return EXIT_FATAL
    return 0


def _supervise(settings: Settings) -> int:
    from consumer.ops.workers import Supervisor

    supervisor = Supervisor(settings)

    def on_stop_signal(signum: int, _frame: object) -> None:
        log.info("signal %s: stopping the workers", signal.Signals(signum).name)
        supervisor.stop()

    signal.signal(signal.SIGTERM, on_stop_signal)
    signal.signal(signal.SIGINT, on_stop_signal)
    return supervisor.run()


def _settle_in() -> None:
    """Ready to consume: what the first events would build is built now (the table of country
    names, ~50 ms of CPU from babel's locale data), then kept out of the GC's sight; garbage
    is collected on a timer from now on (`garbage.py`)."""
    from consumer.events.normalize.countries import country_names
    from consumer.service.garbage import collect_on_a_timer

    country_names()
    collect_on_a_timer()
