"""The model the service scores with: the registry's `champion`, swapped whole when the alias
moves.

A poller asks the registry where the alias points every `serving.poll_seconds`; a new
version is loaded aside and then published by one reference assignment. A request takes
the reference once and scores every row with it, so no request mixes two versions and
none waits for a load. The feature service is resolved with each version: a new champion
may be trained on features the service gained since the last one.
"""

from __future__ import annotations

import gc
import logging
import threading
from dataclasses import dataclass

from pipelines import contracts
from pipelines.io import tracking
from pipelines.registry import model_versions
from pipelines.scoring.predictor import ScoringModel, load_version, on_one_thread
from pipelines.serving.features import OnlineFeatures, open_online_features
from pipelines.settings import Settings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Champion:
    """A loaded version of the project's model and the online features it reads."""

    name: str
    version: str
    run_id: str
    model: ScoringModel
    online: OnlineFeatures


def load_champion(settings: Settings, version: str) -> Champion:
    """A registered version of the project's model, loaded as batch scoring loads it, and
    the feature service as the registry holds it now."""
    name = settings.project.model.name
    client = tracking.mlflow_client(settings)
    registered = client.get_model_version(name, version)
    uri = client.get_model_version_download_uri(name, version)
    model = on_one_thread(load_version(settings, uri))
    return Champion(name, version, registered.run_id, model, open_online_features(settings))


class ChampionWatcher:
    """Holds the current champion and follows the alias from a daemon thread."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._current: Champion | None = None
        self._stopped = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def current(self) -> Champion | None:
        """The champion to score a request with (None before one is registered)."""
        return self._current

    def refresh(self) -> bool:
        """Load the version the alias points to if it is not the current one; whether the
        champion changed."""
        version = model_versions.alias_version(self._settings, contracts.CHAMPION)
        current = self._current
        if version is None or (current is not None and current.version == version):
            return False
        self._current = load_champion(self._settings, version)
        log.info("serving %s version %s", self._current.name, version)
        return True

    def start(self) -> None:
        """Follow the alias until `stop`; a failed look is logged and retried next time."""
        self._thread = threading.Thread(target=self._follow, name="champion-watcher", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop following the alias."""
        self._stopped.set()
        if self._thread is not None:
            self._thread.join()

    def _follow(self) -> None:
        while not self._stopped.wait(self._settings.serving.poll_seconds):
            try:
                if self.refresh():
                    settle_heap()
            except Exception as error:  # the service keeps its champion meanwhile
                log.warning("could not look up the champion: %s", error)


def settle_heap() -> None:
    """Exempt what is loaded now (libraries, registry, model) from the cyclic collector.

    The service holds some 400,000 long-lived objects; a full collection walks them all,
    a pause of about 250 ms on this machine that lands on whichever requests are in
    flight. Frozen objects are still freed by reference counting.
    """
    gc.collect()
    gc.freeze()
