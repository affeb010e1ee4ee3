"""The kiosk's configuration as operators change it: layers, versions, persistence.

The effective config is three layers, each validated exactly as the file is
(:func:`edge.config.from_mapping`)::

    the local file  <  the fleet-wide signed policy push  <  this device's config/desired

Operators may change only the sections in :data:`REMOTE_SECTIONS` (lane, policy,
passage, scan, log, fleet timings) and the keys in :data:`REMOTE_KEYS` (the
screen's language and voice volume, per lane): identity, broker, store, pins, camera and
trust files stay as the installer set them in the file, so a bad push can never
cut a kiosk off its broker or its store. A desired config or push is applied
only when its version is newer than the one applied and the result is valid;
otherwise it is reported as rejected and the last good config stays.

What was applied survives restarts: ``<store dir>/fleet/state.json`` (written
atomically), with the pushed trust list beside it in ``trust-push.json``. The
same file keeps the MQTT session counter and which alerts were last published.
"""

from __future__ import annotations

import copy
import json
import logging
import tempfile
import threading
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from edge import config as config_mod
from edge.config import Config
from edge.core.model import iso_utc
from edge.core.times import parse_iso
from edge.errors import ConfigError, EdgeError, StoreError, TrustError
from edge.fleet.signing import Push, PushRejected, VerifyKey, load_verify_keys, verify
from edge.rules.book import from_bundle
from edge.rules.rules import RuleError
from edge.scan.trust import load_trust
from edge.store.storage import ensure_dir, read_json, replace_file

log = logging.getLogger(__name__)

REMOTE_SECTIONS = ("lane", "policy", "passage", "scan", "log", "fleet")
LOCAL_ONLY_KEYS = {"fleet.keys", "fleet.remote_config"}  # who may push, and whether
# of other sections, only these keys (the screen's language and voice, per lane)
REMOTE_KEYS = {"kiosk": ("language", "voice", "voice_volume")}
MAX_DESIRED_BYTES = 256 * 1024
SESSION_SKIP = 1000  # after recovering the state file: stay ahead of numbers maybe used


@dataclass(frozen=True)
class Offer:
    """What became of a desired config or push: ``changed`` = the kiosk must apply it
    (restart for config and policy, reload for trust)."""

    changed: bool
    state: str  # applied, rejected, unchanged
    detail: str = ""


def pushed_trust_file(store_dir: Path) -> Path:
    """Where a kiosk keeps the trust list pushed to the fleet (beside its fleet state)."""
    return store_dir / "fleet" / "trust-push.json"


def pushed_rules_file(store_dir: Path) -> Path:
    """Where a kiosk keeps the rule set pushed to the fleet (beside its fleet state)."""
    return store_dir / "fleet" / "rules-push.json"


def _merge(base: Mapping[str, Any], layer: Mapping[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(dict(base))
    for section, table in layer.items():
        merged = dict(out.get(section, {}))
        merged.update(table)
        out[section] = merged
    return out


def _remote_keys() -> str:
    return ", ".join(f"{section}.{key}" for section, keys in REMOTE_KEYS.items() for key in keys)


def _check_remote(doc: Any) -> dict[str, dict[str, Any]]:
    """The sections of a remote layer, or ConfigError naming what may not be set."""
    if not isinstance(doc, dict):
        raise ConfigError(["config must be a JSON object of sections"], "config/desired")
    problems: list[str] = []
    for section, table in doc.items():
        if section not in REMOTE_SECTIONS and section not in REMOTE_KEYS:
            problems.append(
                f"{section}: cannot be set remotely (only {', '.join(REMOTE_SECTIONS)}, and "
                f"{_remote_keys()}; the rest is the local file's)"
            )
        elif not isinstance(table, dict):
            problems.append(f"{section}: must be a table")
        else:
            problems += [
                f"{section}.{key}: cannot be set remotely"
                for key in table
                if f"{section}.{key}" in LOCAL_ONLY_KEYS
                or (section in REMOTE_KEYS and key not in REMOTE_KEYS[section])
            ]
    if problems:
        raise ConfigError(problems, "config/desired")
    return doc


class RemoteConfig:
    """The layers, their versions, and the state file. Thread-safe."""

    def __init__(self, base: Mapping[str, Any], base_dir: Path, source: str) -> None:
        self.base = dict(base)
        self.base_dir = base_dir
        self.source = source
        self.file_config = config_mod.from_mapping(base, base_dir, source)  # ConfigError
        self.dir = self.file_config.store.dir / "fleet"
        self.state_path = self.dir / "state.json"
        self.trust_path = pushed_trust_file(self.file_config.store.dir)
        self.rules_path = pushed_rules_file(self.file_config.store.dir)
        self._lock = threading.Lock()
        self._state: dict[str, Any] = {}
        self.replies: OrderedDict[str, Any] = OrderedDict()  # command replies, for every App
        self.keys: list[VerifyKey] = []
        self.key_error = ""
        try:
            self.keys = load_verify_keys(self.file_config.fleet.keys)
        except TrustError as exc:
            self.key_error = str(exc)
            log.error("fleet: %s; every push will be refused", exc)  # noqa: TRY400
        ensure_dir(self.dir)
        loaded = read_json(self.state_path, _check_state)
        if loaded is not None and isinstance(loaded.data, dict):
            self._state = loaded.data
        if loaded is not None and (loaded.recovered or loaded.lost):
            # the last good copy may be behind the session numbers already used
            self._state["session"] = int(self._state.get("session", 0)) + SESSION_SKIP
        self.effective = self._build_effective()

    @classmethod
    def from_file(cls, path: Path) -> RemoteConfig:
        return cls(config_mod.read_toml(path), path.resolve().parent, str(path))

    @classmethod
    def from_config(cls, cfg: Config) -> RemoteConfig:
        """For a config built in code (tests, tools): the config itself is the file layer."""
        return cls(config_mod.to_mapping(cfg), Path("/"), "config")

    # -- layers -------------------------------------------------------------

    def _layered(
        self, policy: Mapping[str, Any] | None, desired: Mapping[str, Any] | None
    ) -> Config:
        data = self.base
        if policy:
            data = _merge(data, {"policy": policy})
        if desired:
            data = _merge(data, desired)
        return config_mod.from_mapping(data, self.base_dir, self.source)

    def _build_effective(self) -> Config:
        policy = self._state.get("policy", {}).get("policy")
        desired = self._state.get("desired", {}).get("config")
        if not self.file_config.fleet.remote_config:
            desired = None
        for layers in ((policy, desired), (policy, None), (None, None)):
            try:
                return self._layered(*layers)
            except ConfigError as exc:
                log.error("fleet: the stored remote config no longer fits the file: %s", exc)  # noqa: TRY400
                self._note("desired", self.config_version, "rejected", "; ".join(exc.problems))
        return self.file_config  # pragma: no cover - (None, None) is the file itself

    @property
    def config_version(self) -> int:
        return int(self._state.get("desired", {}).get("version", 0))

    @property
    def policy_version(self) -> int:
        return int(self._state.get("policy", {}).get("version", 0))

    @property
    def trust_version(self) -> int:
        return int(self._state.get("trust", {}).get("version", 0))

    @property
    def trust_issued(self) -> datetime | None:
        issued = self._state.get("trust", {}).get("issued")
        return (
            parse_iso(issued, naive="keep", z_as_offset=False) if isinstance(issued, str) else None
        )

    @property
    def rules_version(self) -> int:
        return int(self._state.get("rules", {}).get("version", 0))

    @property
    def rules_issued(self) -> datetime | None:
        issued = self._state.get("rules", {}).get("issued")
        return (
            parse_iso(issued, naive="keep", z_as_offset=False) if isinstance(issued, str) else None
        )

    def trust_files(self) -> tuple[Path, ...]:
        """The file's trust files, and the pushed trust list when there is one."""
        pushed = (self.trust_path,) if self.trust_path.is_file() else ()
        return (*self.effective.trust.files, *pushed)

    # -- offers ---------------------------------------------------------------

    def offer_desired(self, payload: bytes) -> Offer:
        """A retained ``config/desired`` message."""
        with self._lock:
            try:
                version, layer = self._parse_desired(payload)
            except ConfigError as exc:
                return self._reject("desired", None, "; ".join(exc.problems))
            if version == self.config_version or version == self._refused("desired"):
                return Offer(False, "unchanged")  # the retained copy, again after a reconnect
            if version < self.config_version:
                return self._reject(
                    "desired", version, f"version {version} is older than {self.config_version}"
                )
            if not self.file_config.fleet.remote_config:
                return self._reject("desired", version, "remote config is off on this kiosk")
            try:
                policy = self._state.get("policy", {}).get("policy")
                effective = self._layered(policy, layer)
            except ConfigError as exc:
                return self._reject("desired", version, "; ".join(exc.problems))
            state = copy.deepcopy(self._state)
            state["pending"] = {"what": "desired", "previous": state.get("desired")}
            state["desired"] = {"version": version, "config": layer}
            return self._commit(state, effective, "desired", version)

    def _parse_desired(self, payload: bytes) -> tuple[int, dict[str, dict[str, Any]]]:
        if len(payload) > MAX_DESIRED_BYTES:
            raise ConfigError([f"too large ({len(payload)} bytes)"], "config/desired")
        if not payload:
            raise ConfigError(["empty (cleared)"], "config/desired")
        try:
            doc = json.loads(payload)
        except (ValueError, UnicodeDecodeError, RecursionError):
            raise ConfigError(["not JSON"], "config/desired") from None
        if not isinstance(doc, dict) or set(doc) - {"version", "config"}:
            raise ConfigError(['must be {"version": N, "config": {...}}'], "config/desired")
        version = doc.get("version")
        if not isinstance(version, int) or isinstance(version, bool) or version < 1:
            raise ConfigError(["version must be a positive integer"], "config/desired")
        return version, _check_remote(doc.get("config", {}))

    def offer_push(self, kind: str, payload: bytes) -> Offer:  # noqa: PLR0911 - guard clauses
        """A retained signed push on ``cp/v1/$all/<kind>`` (trust, policy or rules)."""
        with self._lock:
            if not payload:
                return Offer(False, "unchanged")  # cleared: keep what was applied
            try:
                if self.key_error:
                    raise PushRejected("no_fleet_key", self.key_error)
                push = verify(payload, kind, self.keys)
            except PushRejected as exc:
                log.warning("fleet: %s push refused: %s", kind, exc)
                return self._reject(kind, None, str(exc))
            held = {"trust": self.trust_version, "rules": self.rules_version}.get(
                kind, self.policy_version
            )
            repair = push.version == held and self._damaged(kind, push.body)
            if (push.version <= held or push.version == self._refused(kind)) and not repair:
                if push.version in (held, self._refused(kind)):
                    return Offer(False, "unchanged")  # the retained copy, again
                return self._reject(
                    kind, push.version, f"version {push.version} is older than {held}"
                )
            try:
                if kind == "trust":
                    return self._offer_trust(push)
                if kind == "rules":
                    return self._offer_rules(push)
                state, effective = self._policy_state(push)
            except (ConfigError, TrustError, RuleError) as exc:
                return self._reject(kind, push.version, str(exc))
            except (ValueError, TypeError, RecursionError) as exc:  # a bug: never retried for ever
                log.exception("fleet: %s push version %d could not be applied", kind, push.version)
                return self._reject(kind, push.version, f"cannot be applied ({type(exc).__name__})")
            except EdgeError as exc:  # the pushed list could not be saved
                return self._reject(kind, push.version, f"cannot be saved: {exc}")
            return self._commit(state, effective, "policy", push.version)

    def _offer_trust(self, push: Push) -> Offer:
        """A trust list applies at once (the trust store reloads; no restart)."""
        self._apply_trust(push)
        self._note("trust", push.version, "applied")
        self._save()
        log.info("fleet: trust push version %d applied", push.version)
        return Offer(True, "applied")

    def _damaged(self, kind: str, body: bytes) -> bool:
        """The saved copy of the push in use is not what was pushed (a damaged card):
        the retained push, seen again, repairs it."""
        path = {"trust": self.trust_path, "rules": self.rules_path}.get(kind)
        if path is None:
            return False
        try:
            return path.read_bytes() != body
        except OSError:
            return True

    def _offer_rules(self, push: Push) -> Offer:
        """A rule set applies at once (the rules reload; no restart), once every rule in
        it parses and compiles: RuleError refuses it and the last good set stays."""
        try:
            doc = json.loads(push.body)
        except (ValueError, UnicodeDecodeError, RecursionError) as exc:
            raise RuleError("rules push", ["the body is not JSON"]) from exc
        rules = from_bundle(doc)
        country = self.file_config.rules.country
        if not any(r.type == "Acceptance" and r.country == country for r in rules.rules):
            raise RuleError("rules push", [f"no Acceptance rule of {country} (this kiosk's)"])
        replace_file(self.rules_path, push.body)
        self._state["rules"] = {"version": push.version, "issued": iso_utc(push.issued)}
        self._note("rules", push.version, "applied")
        self._save()
        log.info("fleet: rules push version %d applied (%d rules)", push.version, len(rules.rules))
        return Offer(True, "applied")

    def _commit(self, state: dict[str, Any], effective: Config, what: str, version: int) -> Offer:
        """Save the new state first; only then is it the kiosk's (a disk that cannot take
        it leaves everything as it was). The kiosk then restarts into it: ``confirm`` once
        it runs, ``rollback`` if it cannot start with it."""
        previous = self._state
        self._state = state
        self._note(what, version, "applying")
        try:
            self._save()
        except EdgeError as exc:
            self._state = previous
            return self._reject(what, version, f"cannot be saved: {exc}")
        self.effective = effective
        log.info("fleet: %s version %d accepted; restarting into it", what, version)
        return Offer(True, "applying")

    def _refused(self, what: str) -> int:
        """The version of ``what`` rolled back because the kiosk could not start with it."""
        return int(self._state.get("refused", {}).get(what, 0))

    @property
    def pending(self) -> bool:
        """A new config or policy was accepted and the kiosk has not yet run with it."""
        return "pending" in self._state

    def confirm(self) -> None:
        """The kiosk runs with the pending layer: it is applied."""
        with self._lock:
            pending = self._state.pop("pending", None)
            if pending is None:
                return
            what = pending["what"]
            version = self.config_version if what == "desired" else self.policy_version
            self._note(what, version, "applied")
            try:
                self._save()
            except EdgeError as exc:
                log.error("fleet: cannot save state: %s", exc)  # noqa: TRY400

    def rollback(self, detail: str) -> bool:
        """The kiosk cannot start with the pending layer: back to the last good one,
        reported rejected. False when nothing was pending."""
        with self._lock:
            pending = self._state.pop("pending", None)
            if pending is None:
                return False
            what = pending["what"]
            version = self.config_version if what == "desired" else self.policy_version
            if pending.get("previous") is None:
                self._state.pop(what, None)
            else:
                self._state[what] = pending["previous"]
            self._note(what, version, "rejected", detail)
            self._state.setdefault("refused", {})[what] = version  # not again at each connect
            try:
                self._save()
            except EdgeError as exc:
                log.error("fleet: cannot save state: %s", exc)  # noqa: TRY400
            self.effective = self._build_effective()
            log.error("fleet: %s version %d rolled back: %s", what, version, detail)
            return True

    def _apply_trust(self, push: Push) -> None:
        with tempfile.NamedTemporaryFile(dir=self.dir, suffix=".json", delete=False) as tmp:
            tmp.write(push.body)
        candidate = Path(tmp.name)
        try:
            load_trust([*self.effective.trust.files, candidate])  # TrustError: refused
        finally:
            candidate.unlink(missing_ok=True)
        replace_file(self.trust_path, push.body)
        self._state["trust"] = {"version": push.version, "issued": iso_utc(push.issued)}

    def _policy_state(self, push: Push) -> tuple[dict[str, Any], Config]:
        try:
            table = json.loads(push.body)
        except (ValueError, UnicodeDecodeError, RecursionError):
            raise ConfigError(["policy push: body is not JSON"], "policy push") from None
        if not isinstance(table, dict):
            raise ConfigError(["policy push: body must be a [policy] table"], "policy push")
        self._layered(table, None)  # valid on its own, not only where a device overrides it
        desired = self._state.get("desired", {}).get("config")
        effective = self._layered(table, desired)
        state = copy.deepcopy(self._state)
        state["pending"] = {"what": "policy", "previous": state.get("policy")}
        state["policy"] = {"version": push.version, "issued": iso_utc(push.issued), "policy": table}
        return state, effective

    # -- reporting ------------------------------------------------------------

    def _reject(self, what: str, version: int | None, detail: str) -> Offer:
        log.warning("fleet: %s version %s rejected: %s", what, version, detail)
        self._note(what, version, "rejected", detail)
        try:
            self._save()
        except EdgeError as exc:
            log.error("fleet: cannot save state: %s", exc)  # noqa: TRY400
        return Offer(False, "rejected", detail)

    def _note(self, what: str, version: int | None, state: str, detail: str = "") -> None:
        last = {"version": version, "state": state, "ts": iso_utc(datetime.now(UTC))}
        if detail:
            last["detail"] = detail
        self._state.setdefault("last", {})[what] = last

    def reported(self) -> dict[str, Any]:
        """The retained ``config/reported`` payload: what is applied, and the last outcome
        of each kind of offer."""
        with self._lock:
            return {
                "version": self.config_version,
                "policy_version": self.policy_version,
                "trust_version": self.trust_version,
                "rules_version": self.rules_version,
                "remote_config": self.file_config.fleet.remote_config,
                "last": copy.deepcopy(self._state.get("last", {})),
            }

    # -- the rest of the state file ---------------------------------------------

    def next_session(self) -> int:
        """A new MQTT session number (one per connection attempt), saved before use."""
        with self._lock:
            session = int(self._state.get("session", 0)) + 1
            self._state["session"] = session
            try:
                self._save()
            except StoreError as exc:
                log.error("fleet: session counter not saved: %s", exc)  # noqa: TRY400
            return session

    # -- commands that moved hardware (the command journal) --------------------------

    def seen(self, key: str) -> bool:
        with self._lock:
            return key in self._state.get("commands", {})

    def record(self, key: str, expires: datetime) -> None:
        """Keep ``key`` until ``expires`` (saved before the command acts)."""
        with self._lock:
            now = iso_utc(datetime.now(UTC))
            journal = {k: v for k, v in self._state.get("commands", {}).items() if v > now}
            journal[key] = iso_utc(expires)
            self._state["commands"] = journal
            try:
                self._save()
            except StoreError as exc:
                log.error("fleet: command journal not saved: %s", exc)  # noqa: TRY400

    def published_alerts(self) -> list[str]:
        with self._lock:
            return list(self._state.get("alerts", []))

    def set_published_alerts(self, names: list[str]) -> None:
        with self._lock:
            if sorted(names) == sorted(self._state.get("alerts", [])):
                return
            self._state["alerts"] = sorted(names)
            try:
                self._save()
            except StoreError as exc:
                log.error("fleet: cannot save state: %s", exc)  # noqa: TRY400

    def _save(self) -> None:
        replace_file(self.state_path, json.dumps(self._state, indent=1).encode())


def _check_state(data: Any) -> None:
    if not isinstance(data, dict):
        raise TypeError("the fleet state must be a JSON object")
