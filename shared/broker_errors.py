"""The broker's boundary: a broker that does not answer becomes BrokerUnavailable.

Whoever sends a message (or checks the broker before a submit) does it inside `broker_boundary()`,
so that callers catch one type of ours, not kombu's, redis-py's or py-amqp's. Those libraries are
imported here only when a send failed: the CLI's start-up stays light.
"""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from shared.config import redact
from shared.errors import BrokerUnavailable


def connection_errors() -> tuple[type[BaseException], ...]:
    """The exception types a send raises when the broker is down or drops the connection."""
    import kombu.exceptions

    found: list[type[BaseException]] = [ConnectionError, TimeoutError, kombu.exceptions.OperationalError,
                                        kombu.exceptions.ConnectionError]
    try:
        import redis.exceptions

        found += [redis.exceptions.ConnectionError, redis.exceptions.TimeoutError]
    except ImportError:  # redis-py is only needed with a Redis broker
        pass
    return tuple(found)


def answered_with_an_error(error: BaseException) -> bool:
    """Whether the broker was reached and refused (a Redis db number it lacks, a wrong or missing password):
    redis-py's ResponseError somewhere in the chain kombu wraps it in, as against a connection that failed."""
    try:
        import redis.exceptions
    except ImportError:
        return False
    seen: BaseException | None = error
    while seen is not None:
        if isinstance(seen, (redis.exceptions.ResponseError, redis.exceptions.AuthenticationError)):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


@contextmanager
def broker_boundary() -> Iterator[None]:
    """Turn the broker libraries' connection errors into BrokerUnavailable (one line, password hidden)."""
    try:
        yield
    except Exception as error:
        if not isinstance(error, connection_errors()):
            raise
        text = str(error).strip()
        what = "broker refused the connection" if answered_with_an_error(error) else "broker unreachable"
        # redis-py ends its messages with a full stop: "...Connection refused." read ".; nothing was queued"
        detail = redact(text.splitlines()[0].rstrip(".") if text else type(error).__name__)
        raise BrokerUnavailable(f"{what}: {detail}") from error
