"""Leads, their qualifications and scores: incremental assets over the landed messages."""

from dagster import (
    AssetCheckResult,
    AssetExecutionContext,
    MaterializeResult,
    MetadataValue,
    asset,
    asset_check,
)

from assets.landing import landed_messages, scalar
from leadflow.leads.stages import DEFAULT_PIPELINE, LOST
from leadflow.leads.store.assignment import assign_new_leads
from leadflow.leads.store.identities import resolve_new_messages
from leadflow.leads.store.qualifications import qualify_changed_leads
from leadflow.leads.store.scores import score_qualified_leads
from leadflow.leads.store.stages import update_stages
from pipelines.resources import PostgresResource


@asset(group_name="leads", kinds={"postgres", "polars"}, deps=[landed_messages],
       description="One lead per broker and person across channels (identity resolution), with the link table "
                   "that explains each merge.")
def leads(context: AssetExecutionContext, postgres: PostgresResource) -> MaterializeResult:
    result = resolve_new_messages(postgres.url)
    context.log.info("assigned %s messages: %s new leads, %s merges", result.messages, result.new_leads,
                     result.merges)
    return MaterializeResult(metadata={"messages_assigned": result.messages, "new_leads": result.new_leads,
                                       "merges": result.merges, "leads_touched": result.touched_leads})


@asset(group_name="leads", kinds={"postgres"}, deps=[leads],
       description="Each changed lead's conversation qualified (schema v1) by its broker's LLM with the rules as "
                   "fallback, or by the rules; unchanged conversations are skipped by hash.")
def lead_qualifications(context: AssetExecutionContext, postgres: PostgresResource) -> MaterializeResult:
    result = qualify_changed_leads(postgres.url)
    return MaterializeResult(metadata={"candidates": result.candidates, "qualified": result.qualified,
                                       "unchanged_skipped": result.unchanged, "llm_calls": result.llm_calls,
                                       "llm_fallbacks_to_rules": result.fallbacks,
                                       "llm_answers_remembered": result.remembered,
                                       "llm_cost_usd": result.cost_usd,
                                       "by_operation": MetadataValue.json(result.by_operation)})


@asset(group_name="leads", kinds={"postgres"}, deps=[lead_qualifications],
       description="Each new, never-assigned lead given to a person by its broker's automatic assignment "
                   "(round robin among agents, or rules by channel and area), audited; after the "
                   "qualification because rules read the lead's areas.")
def lead_assignments(context: AssetExecutionContext, postgres: PostgresResource) -> MaterializeResult:
    result = assign_new_leads(postgres.url)
    if result.invalid_configs:
        context.log.warning("brokers %s have an assignment config that no longer validates: skipped",
                            result.invalid_configs)
    return MaterializeResult(metadata={"candidates": result.candidates, "assigned": result.assigned,
                                       "left_unassigned": result.left_unassigned,
                                       "by_how": MetadataValue.json(result.by_how)})


@asset_check(asset=lead_assignments, description="No lead is assigned to a person of another broker.")
def assignments_stay_in_their_broker(postgres: PostgresResource) -> AssetCheckResult:
    crossed = scalar(postgres.url, """SELECT count(*) FROM leadflow.leads l JOIN leadflow.users u
                                      ON u.user_id = l.assigned_user_id
                                      WHERE u.broker_id IS DISTINCT FROM l.broker_id""")
    return AssetCheckResult(passed=crossed == 0, metadata={"leads_assigned_across_brokers": crossed})


@asset(group_name="leads", kinds={"postgres"}, deps=[lead_qualifications],
       description="Score 0–100, temperature and the breakdown of points for every newly qualified lead.")
def lead_scores(context: AssetExecutionContext, postgres: PostgresResource) -> MaterializeResult:
    result = score_qualified_leads(postgres.url)
    return MaterializeResult(metadata={"scored": result.scored,
                                       "by_temperature": MetadataValue.json(result.by_temperature),
                                       "score_histogram": MetadataValue.json(dict(sorted(result.histogram.items())))})


@asset_check(asset=leads, description="A lead, its identities and its messages all belong to one broker.")
def leads_never_cross_brokers(postgres: PostgresResource) -> AssetCheckResult:
    crossed = scalar(postgres.url, """
        SELECT (SELECT count(*) FROM leadflow.message_leads ml JOIN leadflow.leads l USING (lead_id)
                JOIN leadflow.raw_messages m USING (message_id)
                WHERE ml.broker_id <> l.broker_id OR m.broker_id <> l.broker_id)
             + (SELECT count(*) FROM leadflow.lead_identities i JOIN leadflow.leads l USING (lead_id)
                WHERE i.broker_id <> l.broker_id)""")
    return AssetCheckResult(passed=crossed == 0, metadata={"rows_crossing_brokers": crossed})


@asset_check(asset=lead_scores, description="Every score is within 0–100 and its temperature is known.")
def scores_in_range(postgres: PostgresResource) -> AssetCheckResult:
    bad = scalar(postgres.url, "SELECT count(*) FROM leadflow.lead_scores WHERE score NOT BETWEEN 0 AND 100 "
                               "OR temperature NOT IN ('cold', 'warm', 'hot')")
    return AssetCheckResult(passed=bad == 0, metadata={"out_of_range": bad})


@asset(group_name="leads", kinds={"postgres"}, deps=[lead_scores],
       description="Each lead's sales-pipeline stage, advanced automatically (never backwards) with every "
                   "transition in leadflow.stage_events; leads idle past their stage's limit are flagged stalled.")
def lead_stages(context: AssetExecutionContext, postgres: PostgresResource) -> MaterializeResult:
    result = update_stages(postgres.url)
    return MaterializeResult(metadata={"evaluated": result.evaluated, "transitions": result.transitions,
                                       "entered": MetadataValue.json(result.entered), "stalled": result.stalled})


@asset_check(asset=lead_stages, description="No automatic transition moved a lead backwards in its pipeline.")
def no_stage_regression(postgres: PostgresResource) -> AssetCheckResult:
    order = ", ".join(f"('{s.code}', {i})" for i, s in enumerate(DEFAULT_PIPELINE.stages))
    regressions = scalar(postgres.url, f"""
        WITH positions(stage, position) AS (VALUES {order}, ('{LOST}', 1000))
        SELECT count(*) FROM leadflow.stage_events e
        JOIN positions f ON f.stage = e.from_stage JOIN positions t ON t.stage = e.to_stage
        WHERE e.automatic AND t.position < f.position""")
    return AssetCheckResult(passed=regressions == 0, metadata={"regressions": regressions})
