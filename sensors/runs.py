"""Run states the sensors treat as "a run of this job is on its way"."""

from dagster import DagsterRunStatus

IN_FLIGHT = [DagsterRunStatus.QUEUED, DagsterRunStatus.NOT_STARTED, DagsterRunStatus.STARTING,
             DagsterRunStatus.STARTED]
