"""The JetStream side of the ingest's NATS source, set up once per connection: the
connection's options, the passages' stream and the workers' durable consumer.

**The stream** is created by the first worker that finds it missing: subjects
``cp.v1.*.passage`` (what the cluster's MQTT listener makes of ``cp/v1/<id>/passage``),
file storage, ``[nats] replicas`` copies, **work-queue retention** (a passage leaves the
stream once a worker acknowledges it, i.e. once the database has it: the stream holds
the ingest's backlog, not a second history beside the database, and its size says how
far the ingest is behind) and ``max_age_s`` (what no worker took that long goes; its
kiosk still holds it and sends it again). An existing stream must capture the subject
and not be sealed, else :class:`SourceError` (waiting would not cure it).

**The consumer** (``[nats] durable``, shared by every worker): pull, explicit acks,
``ack_wait_s``, ``max_ack_pending``, unlimited redeliveries, from the first message. A
worker with other ack_wait_s or max_ack_pending brings the consumer to its own values
(logged); one of another kind by that name (push, other acks, other subjects) is a
SourceError.

nats-py is imported here and in :mod:`edge.central.nats_source` only: a kiosk's install
has no nats-py, and an ingest with ``source = "nats"`` without it gets a SourceError
saying what to install.
"""

from __future__ import annotations

import logging
import ssl
from typing import Any

from edge import files
from edge.central.source import NATS_MISSING, SourceError
from edge.config import NatsConfig
from edge.config.nats import uses_tls
from edge.errors import ConfigError, InputError
from edge.mqtt import topics

try:
    from nats.js import JetStreamContext, api
    from nats.js.errors import BadRequestError, NotFoundError
except ImportError as exc:  # a kiosk's install: only an ingest with source = "nats" needs it
    raise SourceError(NATS_MISSING) from exc

log = logging.getLogger(__name__)

SUBJECT = topics.nats_subject(topics.all_passages())  # cp.v1.*.passage


def connect_options(cfg: NatsConfig, name: str) -> dict[str, Any]:
    """nats-py's connect() arguments; ConfigError when a secret or TLS file is unusable."""
    options: dict[str, Any] = {
        "servers": list(cfg.servers),
        "name": name,
        "allow_reconnect": True,
        "max_reconnect_attempts": -1,  # for ever, the first connection too
        "reconnect_time_wait": 1,
        "connect_timeout": 2,
        "ping_interval": 10,  # a node that went silent is left within about 30 s
        "max_outstanding_pings": 2,
    }
    if uses_tls(cfg):
        try:
            context = ssl.create_default_context(cafile=str(cfg.ca_file) if cfg.ca_file else None)
            if cfg.cert_file is not None and cfg.key_file is not None:
                context.load_cert_chain(str(cfg.cert_file), str(cfg.key_file))
        except (OSError, ValueError) as exc:  # ssl.SSLError is an OSError
            raise ConfigError([f"nats: TLS files unusable: {exc}"]) from exc
        options["tls"] = context
    if cfg.user and cfg.password_file is not None:
        try:
            secret = files.read_text_limited(cfg.password_file, files.SECRET, "password file")
        except InputError as exc:
            raise ConfigError([f"nats.password_file: {exc.reason}"]) from exc
        options["user"], options["password"] = cfg.user, secret.rstrip("\r\n")
    if cfg.creds_file is not None:
        options["user_credentials"] = str(cfg.creds_file)
    return options


def stream_config(cfg: NatsConfig) -> api.StreamConfig:
    return api.StreamConfig(
        name=cfg.stream,
        description="checkpoint-edge passages, until an ingest worker has stored them",
        subjects=[SUBJECT],
        retention=api.RetentionPolicy.WORK_QUEUE,
        storage=api.StorageType.FILE,
        num_replicas=cfg.replicas,
        max_age=float(cfg.max_age_s),  # 0: no limit
        discard=api.DiscardPolicy.OLD,
    )


def covers(pattern: str, subject: str) -> bool:
    """Every subject that ``subject`` (a filter) matches, ``pattern`` matches too."""
    mine, theirs = pattern.split("."), subject.split(".")
    for i, part in enumerate(mine):
        if part == ">":
            return i < len(theirs)
        if i >= len(theirs) or theirs[i] == ">" or part not in ("*", theirs[i]):
            return False
    return len(mine) == len(theirs)


async def ensure_stream(js: JetStreamContext, cfg: NatsConfig) -> None:
    """The passages' stream: created when missing; SourceError when one by its name
    cannot serve (it does not capture the passages, it is sealed)."""
    try:
        info = await js.stream_info(cfg.stream)
    except NotFoundError:
        try:
            info = await js.add_stream(stream_config(cfg))
            log.info(
                "nats: created stream %s (%s, %d replicas, work-queue retention)",
                cfg.stream, SUBJECT, cfg.replicas,
            )  # fmt: skip
        except BadRequestError as exc:  # refused, or made by another worker meanwhile
            try:
                info = await js.stream_info(cfg.stream)
            except NotFoundError:
                raise SourceError(
                    f"cannot create the stream {cfg.stream!r}: {exc.description}"
                ) from exc
    config = info.config
    subjects = list(config.subjects or [])
    if not any(covers(s, SUBJECT) for s in subjects):
        raise SourceError(
            f"the stream {cfg.stream!r} does not capture {SUBJECT} (its subjects: "
            f"{', '.join(subjects) or 'none'}): add it, or name another stream in [nats] stream"
        )
    if config.sealed:
        raise SourceError(f"the stream {cfg.stream!r} is sealed: nothing can be acknowledged")


def consumer_config(cfg: NatsConfig) -> api.ConsumerConfig:
    return api.ConsumerConfig(
        name=cfg.durable,
        durable_name=cfg.durable,
        deliver_policy=api.DeliverPolicy.ALL,
        ack_policy=api.AckPolicy.EXPLICIT,
        ack_wait=cfg.ack_wait_s,
        max_deliver=-1,  # a passage is never given up
        max_ack_pending=cfg.max_ack_pending,
        filter_subject=SUBJECT,
    )


async def ensure_consumer(js: JetStreamContext, cfg: NatsConfig) -> None:
    """The durable pull consumer: created when missing, its ack_wait and max_ack_pending
    brought to this worker's; SourceError when one by its name is of another kind."""
    wanted = consumer_config(cfg)
    try:
        have: api.ConsumerConfig | None = (await js.consumer_info(cfg.stream, cfg.durable)).config
    except NotFoundError:
        have = None
    if have is not None:
        problem = _consumer_problem(have)
        if problem:
            raise SourceError(f"the consumer {cfg.durable!r} of {cfg.stream!r} {problem}")
        if (have.ack_wait, have.max_ack_pending) == (wanted.ack_wait, wanted.max_ack_pending):
            return
    try:
        await js.add_consumer(cfg.stream, wanted)  # creates it, or updates those two
    except BadRequestError as exc:
        what = "create" if have is None else "update"
        raise SourceError(
            f"cannot {what} the consumer {cfg.durable!r} of {cfg.stream!r}: {exc.description}"
        ) from exc
    if have is not None:
        log.info(
            "nats: consumer %s: ack_wait %g s, max_ack_pending %d (were %s s, %s)",
            cfg.durable, cfg.ack_wait_s, cfg.max_ack_pending, have.ack_wait, have.max_ack_pending,
        )  # fmt: skip


def _consumer_problem(have: api.ConsumerConfig) -> str | None:
    if have.deliver_subject:
        return "is a push consumer; the ingest needs a pull consumer (or another durable name)"
    if have.ack_policy != api.AckPolicy.EXPLICIT:
        return f"acknowledges {have.ack_policy}; the ingest acknowledges each passage itself"
    if have.filter_subject not in (None, "", SUBJECT):
        return f"takes {have.filter_subject}, not {SUBJECT}"
    return None
