"""App features: list, read and switch an app's features (core/features.py knows which).

Enabling or disabling one changes no dyno, as on Heroku: ``preboot`` steers the next
release's web dynos (manager/preboot.py). The manager is woken so that its view, which the
next release is judged against, holds the change.
"""

from __future__ import annotations

from dynos.core.features import FEATURES, Feature, find_feature
from dynos.platform.context import Services, api_log
from dynos.store.database import Database
from dynos.store.models import App, AppFeature


class Features:
    def __init__(self, services: Services) -> None:
        self._services = services

    async def list(self, app: App) -> list[tuple[Feature, AppFeature]]:
        def read(db: Database) -> list[tuple[Feature, AppFeature]]:
            return [(f, db.app_feature(app.id, f.name)) for f in FEATURES.values()]

        return await self._services.store.call(read)

    async def get(self, app: App, name_or_id: str) -> tuple[Feature, AppFeature]:
        feature = find_feature(app.id, name_or_id)
        state = await self._services.store.call(Database.app_feature, app.id, feature.name)
        return feature, state

    async def set(self, app: App, name_or_id: str, enabled: bool) -> tuple[Feature, AppFeature]:
        feature = find_feature(app.id, name_or_id)
        state = await self._services.store.transaction(
            lambda db: db.set_app_feature(app.id, feature.name, enabled)
        )
        api_log(self._services, app, f"{'Enable' if enabled else 'Disable'} {feature.name}")
        self._services.manager.wake()
        return feature, state
