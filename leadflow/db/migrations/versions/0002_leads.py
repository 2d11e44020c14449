"""Leads: identities and their links, merges, message → lead, qualifications and scores.

Revision ID: 0002_leads
Revises: 0001_backbone
Create Date: 2026-11-26
"""

from alembic import op

revision = "0002_leads"
down_revision = "0001_backbone"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE SEQUENCE leadflow.lead_id_seq;

        CREATE TABLE leadflow.leads (
            lead_id           bigint PRIMARY KEY,
            broker_id         bigint NOT NULL REFERENCES leadflow.brokers (broker_id),
            display_name      text,
            phone_e164        text,
            email             text,
            channels          text[] NOT NULL DEFAULT '{}',
            message_count     integer NOT NULL DEFAULT 0,
            first_message_at  timestamptz,
            last_message_at   timestamptz,
            -- Set when identity resolution merged this lead into another; its rows then point there.
            merged_into       bigint REFERENCES leadflow.leads (lead_id),
            changed_at        timestamptz NOT NULL DEFAULT now()
        );
        CREATE INDEX leads_broker ON leadflow.leads (broker_id, last_message_at);
        CREATE INDEX leads_changed ON leadflow.leads (changed_at);

        -- The link table: why an identity belongs to a lead. Explainable and reversible.
        CREATE TABLE leadflow.lead_identities (
            broker_id       bigint NOT NULL REFERENCES leadflow.brokers (broker_id),
            identity_kind   text NOT NULL,
            identity_value  text NOT NULL,
            lead_id         bigint NOT NULL REFERENCES leadflow.leads (lead_id),
            reason          text NOT NULL,
            linked_at       timestamptz NOT NULL DEFAULT now(),
            PRIMARY KEY (broker_id, identity_kind, identity_value)
        );
        CREATE INDEX lead_identities_lead ON leadflow.lead_identities (lead_id);

        CREATE TABLE leadflow.lead_merges (
            merge_id        bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            broker_id       bigint NOT NULL REFERENCES leadflow.brokers (broker_id),
            merged_lead_id  bigint NOT NULL REFERENCES leadflow.leads (lead_id),
            into_lead_id    bigint NOT NULL REFERENCES leadflow.leads (lead_id),
            reason          text NOT NULL,
            -- What the merge moved, so that it can be undone exactly.
            moved_identities   jsonb NOT NULL DEFAULT '[]'::jsonb,
            moved_message_ids  bigint[] NOT NULL DEFAULT '{}',
            merged_at       timestamptz NOT NULL DEFAULT now()
        );

        CREATE TABLE leadflow.message_leads (
            message_id  bigint PRIMARY KEY REFERENCES leadflow.raw_messages (message_id),
            broker_id   bigint NOT NULL REFERENCES leadflow.brokers (broker_id),
            lead_id     bigint NOT NULL REFERENCES leadflow.leads (lead_id)
        );
        CREATE INDEX message_leads_lead ON leadflow.message_leads (lead_id);

        CREATE TABLE leadflow.lead_qualifications (
            lead_id            bigint PRIMARY KEY REFERENCES leadflow.leads (lead_id),
            broker_id          bigint NOT NULL REFERENCES leadflow.brokers (broker_id),
            qualifier          text NOT NULL,
            schema_version     integer NOT NULL,
            conversation_hash  text NOT NULL,
            name               text,
            phone              text,
            email              text,
            operation          text CHECK (operation IN ('buy', 'rent', 'sell', 'invest')),
            property_type      text CHECK (property_type IN ('apartment', 'house', 'land', 'office', 'commercial')),
            bedrooms_min       integer,
            budget_min         numeric,
            budget_max         numeric,
            budget_currency    text CHECK (budget_currency IN ('UF', 'CLP', 'USD', 'MXN', 'ARS', 'EUR')),
            budget_period      text CHECK (budget_period IN ('total', 'month')),
            locations          text[] NOT NULL DEFAULT '{}',
            timeline_months    integer,
            financing          text CHECK (financing IN ('cash', 'mortgage_preapproved', 'mortgage_needed', 'subsidy')),
            down_payment       numeric,
            monthly_income     numeric,
            dicom_status       text CHECK (dicom_status IN ('clean', 'dirty', 'has_debt', 'unknown')),
            arrears_amount     numeric,
            opted_out          boolean NOT NULL DEFAULT false,
            summary            text,
            qualified_at       timestamptz NOT NULL DEFAULT now()
        );

        CREATE TABLE leadflow.lead_scores (
            lead_id          bigint PRIMARY KEY REFERENCES leadflow.leads (lead_id),
            broker_id        bigint NOT NULL REFERENCES leadflow.brokers (broker_id),
            score            integer NOT NULL CHECK (score BETWEEN 0 AND 100),
            temperature      text NOT NULL CHECK (temperature IN ('cold', 'warm', 'hot')),
            breakdown        jsonb NOT NULL,
            financing_ready  boolean NOT NULL,
            reasons          text[] NOT NULL DEFAULT '{}',
            scored_at        timestamptz NOT NULL
        );
        """
    )


def downgrade() -> None:
    op.execute(
        """
        DROP TABLE leadflow.lead_scores;
        DROP TABLE leadflow.lead_qualifications;
        DROP TABLE leadflow.message_leads;
        DROP TABLE leadflow.lead_merges;
        DROP TABLE leadflow.lead_identities;
        DROP TABLE leadflow.leads;
        DROP SEQUENCE leadflow.lead_id_seq;
        """
    )
