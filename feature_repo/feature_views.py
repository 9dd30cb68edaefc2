"""Feature views: the activity features of a customer as of a point in time."""

from datetime import timedelta

from feast import Entity, FeatureView, Field, FileSource
from feast.types import Float64, Int64, String

from pipelines.settings import Settings


def customer_activity(settings: Settings, customer: Entity, source: FileSource) -> FeatureView:
    """One row per customer per day; a value older than a week is too stale to serve."""
    return FeatureView(
        name=settings.dataset.feature_view,
        entities=[customer],
        ttl=timedelta(days=7),
        schema=[
            Field(name="plan", dtype=String),
            Field(name="region", dtype=String),
            Field(name="tenure_days", dtype=Int64),
            Field(name="monthly_charge", dtype=Float64),
            Field(name="sessions", dtype=Int64),
            Field(name="usage_minutes", dtype=Float64),
            Field(name="payment_failures", dtype=Int64),
            Field(name="support_tickets", dtype=Int64),
            Field(name="days_since_last_login", dtype=Int64),
        ],
        source=source,
        online=True,
        description="Daily activity snapshot of a customer.",
    )
