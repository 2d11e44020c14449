"""Sales-pipeline stages and per-broker settings (scoring, pipeline) as data.

Revision ID: 0003_stages
Revises: 0002_leads
Create Date: 2026-11-26
"""

from alembic import op

revision = "0003_stages"
down_revision = "0002_leads"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        -- A broker's overrides of the defaults in code (scoring weights and thresholds, its pipeline).
        CREATE TABLE leadflow.broker_settings (
            broker_id   bigint PRIMARY KEY REFERENCES leadflow.brokers (broker_id),
            scoring     jsonb NOT NULL DEFAULT '{}'::jsonb,
            pipeline    jsonb NOT NULL DEFAULT '{}'::jsonb,
            updated_at  timestamptz NOT NULL DEFAULT now()
        );

        CREATE TABLE leadflow.lead_stages (
            lead_id      bigint PRIMARY KEY REFERENCES leadflow.leads (lead_id),
            broker_id    bigint NOT NULL REFERENCES leadflow.brokers (broker_id),
            stage        text NOT NULL,
            entered_at   timestamptz NOT NULL,
            evaluated_at timestamptz NOT NULL,
            stalled      boolean NOT NULL DEFAULT false,
            stalled_days integer
        );
        CREATE INDEX lead_stages_broker ON leadflow.lead_stages (broker_id, stage);

        -- Every move between stages: the funnel analytics are built on this table.
        CREATE TABLE leadflow.stage_events (
            stage_event_id  bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            broker_id       bigint NOT NULL REFERENCES leadflow.brokers (broker_id),
            lead_id         bigint NOT NULL REFERENCES leadflow.leads (lead_id),
            from_stage      text,
            to_stage        text NOT NULL,
            occurred_at     timestamptz NOT NULL,
            reason          text NOT NULL,
            automatic       boolean NOT NULL,
            sequence        integer NOT NULL  -- order of events that share a timestamp
        );
        CREATE INDEX stage_events_lead ON leadflow.stage_events (lead_id, occurred_at, sequence);
        CREATE INDEX stage_events_broker ON leadflow.stage_events (broker_id, occurred_at);
        """
    )


def downgrade() -> None:
    op.execute("DROP TABLE leadflow.stage_events; DROP TABLE leadflow.lead_stages; "
               "DROP TABLE leadflow.broker_settings;")
