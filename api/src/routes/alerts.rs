//! `/api/v1/alerts` (read: analysts and admins; change: admins) and
//! `POST /api/v1/events/security` (admins): alerts raised by detection rules or reported
//! security events, and the people answering them.
//!
//! Transitions: acknowledge (open → acknowledged), resolve (open or acknowledged →
//! resolved), reopen (acknowledged or resolved → open: a new escalation round starts at the
//! policy's `reopen_level`, timed from the reopen). Any other is 409 with the alert's current
//! status. Every change is audited.
//!
//! The detail shows every escalation level with each of its notifications (email address,
//! webhook, Slack, Teams, PagerDuty) and their outcome; a dead notification can be retried
//! from the alert (`POST /api/v1/alerts/{id}/notifications/{notification_id}/retry`, admin,
//! audited as `alert.notification.retry`).

use chrono::{DateTime, Utc};
use poem::web::Data;
use poem_openapi::param::{Path, Query};
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Enum, Object, OpenApi};
use vigil_jobs::escalation::{SECURITY_EVENT_RULE, redact_webhook};
use vigil_jobs::{AlertEscalationJob, AuditActor, NotificationJob};
use vigil_store::alerts::{
    self, Alert, AlertAction, AlertQuery, AlertStatus, Restart, TransitionOutcome,
};
use vigil_store::notifications::{
    self, Channel, NewNotification, Notification, NotificationEvent, NotificationStatus,
};
use vigil_store::{alert_open, events, security_events};

use crate::audit::{self, Entry};
use crate::auth::BearerAuth;
use crate::context::RequestId;
use crate::error::{ApiError, ApiResult};
use crate::routes::Tags;
use crate::routes::models::{Severity, encode, example, list_envelope};
use crate::state::ApiState;

/// The alerts routes.
pub struct AlertsApi;

/// Where an alert stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
#[oai(rename_all = "snake_case")]
pub enum AlertStatusName {
    /// Nobody has answered it; it escalates.
    Open,
    /// Someone is on it; escalation stopped.
    Acknowledged,
    /// Done.
    Resolved,
}

impl From<AlertStatus> for AlertStatusName {
    fn from(s: AlertStatus) -> Self {
        match s {
            AlertStatus::Open => AlertStatusName::Open,
            AlertStatus::Acknowledged => AlertStatusName::Acknowledged,
            AlertStatus::Resolved => AlertStatusName::Resolved,
        }
    }
}

impl From<AlertStatusName> for AlertStatus {
    fn from(s: AlertStatusName) -> Self {
        match s {
            AlertStatusName::Open => AlertStatus::Open,
            AlertStatusName::Acknowledged => AlertStatus::Acknowledged,
            AlertStatusName::Resolved => AlertStatus::Resolved,
        }
    }
}

/// One alert.
#[derive(Debug, Clone, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct AlertView {
    pub id: i64,
    /// The detection rule (or `security_event`).
    pub rule_id: String,
    pub title: String,
    pub description: String,
    /// `low`, `medium`, `high` or `critical`.
    pub severity: String,
    pub status: AlertStatusName,
    /// The values the rule groups by (IP, user, ...), joined by `|`.
    pub group_key: String,
    /// Matching events linked to the alert.
    pub count: i64,
    pub first_seen: DateTime<Utc>,
    pub last_seen: DateTime<Utc>,
    /// What the rule observed when it fired (counts, distinct values, spread).
    pub details: serde_json::Value,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub acknowledged_by: Option<String>,
    pub acknowledged_at: Option<DateTime<Utc>>,
    pub resolved_by: Option<String>,
    pub resolved_at: Option<DateTime<Utc>>,
    pub escalation_policy: Option<String>,
    /// The last escalation level reached (0: none).
    pub escalation_level: i64,
    /// When the next level is due (none when answered or past the last level).
    pub next_escalation_at: Option<DateTime<Utc>>,
    /// Escalation round: 1, plus one per reopen (each round starts again from a first level).
    pub escalation_round: i64,
    /// The Okta org of the event that opened it (absent for a reported security event).
    pub org: Option<String>,
}

impl From<Alert> for AlertView {
    fn from(a: Alert) -> Self {
        AlertView {
            id: a.id,
            rule_id: a.rule_id,
            title: a.title,
            description: a.description,
            severity: a.severity,
            status: a.status.into(),
            group_key: a.group_key,
            count: a.event_count,
            first_seen: a.first_seen,
            last_seen: a.last_seen,
            details: serde_json::from_str(&a.details).unwrap_or_default(),
            created_at: a.created_at,
            updated_at: a.updated_at,
            acknowledged_by: a.acknowledged_by,
            acknowledged_at: a.acknowledged_at,
            resolved_by: a.resolved_by,
            resolved_at: a.resolved_at,
            escalation_policy: a.escalation_policy,
            escalation_level: a.escalation_level,
            next_escalation_at: a.next_escalation_at,
            escalation_round: a.escalation_round,
            org: a.org,
        }
    }
}

/// An event behind an alert.
#[derive(Debug, Clone, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct LinkedEvent {
    pub uuid: String,
    /// `okta` (System Log) or `security` (posted security event); `unknown` if it is gone.
    pub kind: String,
    pub published: Option<DateTime<Utc>>,
    pub event_type: Option<String>,
    pub actor: Option<String>,
    pub client_ip: Option<String>,
    pub outcome: Option<String>,
    pub message: Option<String>,
}

/// One escalation level reached, with each notification it sent.
#[derive(Debug, Clone, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct EscalationView {
    /// The escalation round (1, plus one per reopen).
    pub round: i64,
    pub level: i64,
    pub policy: String,
    /// `pending` (notifications queued or retrying), `notified` (every one sent),
    /// `partial` (some sent, some dead), `failed` (every one dead), `suppressed` (the alert
    /// was answered before they went out).
    pub status: String,
    pub emails: Vec<String>,
    /// Webhook targets (scheme and host only: their paths often hold tokens).
    pub webhooks: Vec<String>,
    /// Named Slack, Teams and PagerDuty channels.
    pub channels: Vec<String>,
    pub escalated_at: DateTime<Utc>,
    /// When its notifications were recorded and queued.
    pub queued_at: Option<DateTime<Utc>>,
    /// When every one of its notifications had been sent: only then is the level notified.
    pub notified_at: Option<DateTime<Utc>>,
    pub suppressed_at: Option<DateTime<Utc>>,
    /// When every one of its notifications was dead (the next level is then due at once).
    pub failed_at: Option<DateTime<Utc>>,
    pub notifications: Vec<NotificationView>,
}

/// One failed attempt of a notification.
#[derive(Debug, Clone, Object)]
pub struct NotificationErrorView {
    pub at: DateTime<Utc>,
    pub error: String,
}

/// One notification: a target of a level (or a PagerDuty acknowledge/resolve) and its
/// outcome.
#[derive(Debug, Clone, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct NotificationView {
    pub id: i64,
    /// `email`, `webhook`, `slack`, `teams` or `pagerduty`.
    pub channel: String,
    /// `trigger` (the level's notification), `acknowledge` or `resolve` (PagerDuty).
    pub event: String,
    /// The address, the webhook (scheme and host only) or `<kind>:<channel name>`.
    pub target: String,
    /// `queued`, `sent`, `retrying`, `dead` or `suppressed`.
    pub status: String,
    pub attempts: i64,
    /// The provider's answer when sent (`250 2.0.0 OK`, `HTTP 202`).
    pub response_status: Option<String>,
    /// The provider's id (email Message-ID, PagerDuty dedup key, request id).
    pub response_id: Option<String>,
    pub last_error: Option<String>,
    /// Every failed attempt, oldest first.
    pub errors: Vec<NotificationErrorView>,
    /// The job delivering it (see `GET /api/v1/jobs/{id}`).
    pub job_id: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub sent_at: Option<DateTime<Utc>>,
    /// `POST` here to retry it (admins; only while it is dead).
    pub retry_url: Option<String>,
}

impl From<Notification> for NotificationView {
    fn from(n: Notification) -> Self {
        NotificationView {
            retry_url: (n.status == NotificationStatus::Dead && n.job_id.is_some())
                .then(|| format!("/api/v1/alerts/{}/notifications/{}/retry", n.alert_id, n.id)),
            id: n.id,
            channel: n.channel.to_string(),
            event: n.event.to_string(),
            target: n.target_shown,
            status: n.status.to_string(),
            attempts: n.attempts,
            response_status: n.response_status,
            response_id: n.response_id,
            last_error: n.last_error,
            errors: n
                .errors
                .into_iter()
                .map(|e| NotificationErrorView {
                    at: e.at,
                    error: e.error,
                })
                .collect(),
            job_id: n.job_id,
            created_at: n.created_at,
            updated_at: n.updated_at,
            sent_at: n.sent_at,
        }
    }
}

/// What a retry did.
#[derive(Debug, Clone, Object)]
pub struct NotificationRetried {
    pub notification: NotificationView,
    /// The job's status after the retry (`pending`).
    pub job_status: String,
}

/// One status change.
#[derive(Debug, Clone, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct TransitionView {
    pub action: String,
    pub from_status: String,
    pub to_status: String,
    pub actor: String,
    pub comment: Option<String>,
    pub at: DateTime<Utc>,
}

/// An alert with its events, escalation history and status changes.
#[derive(Debug, Clone, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct AlertDetail {
    #[oai(flatten)]
    pub alert: AlertView,
    /// Up to 100 linked events, oldest first.
    pub events: Vec<LinkedEvent>,
    pub escalations: Vec<EscalationView>,
    /// Notifications that died (every attempt failed): each can be retried.
    pub notifications_dead: i64,
    pub transitions: Vec<TransitionView>,
}

/// One page of alerts with its links (the list route and the live stream).
pub async fn alert_list(db: &vigil_store::Db, query: &AlertQuery) -> ApiResult<AlertList> {
    let (page, page_size) = (query.page.max(1), query.page_size);
    let found = alerts::list(db, query).await?;
    let url = |p: u32| {
        let mut q = vec![format!("page={p}"), format!("page_size={page_size}")];
        if let Some(s) = query.status {
            q.push(format!("status={s}"));
        }
        if let Some(s) = &query.severity {
            q.push(format!("severity={s}"));
        }
        if let Some(r) = &query.rule_id {
            q.push(format!("rule={}", encode(r)));
        }
        format!("/api/v1/alerts?{}", q.join("&"))
    };
    let shown = u64::from(page) * u64::from(page_size);
    Ok(AlertList {
        count: found.total,
        next: (shown < found.total).then(|| url(page + 1)),
        previous: (page > 1).then(|| url(page - 1)),
        results: found.items.into_iter().map(Into::into).collect(),
    })
}

list_envelope!(
    /// A page of alerts, newest first.
    AlertList,
    AlertView,
    {}
);

/// What to do with an alert.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
#[oai(rename_all = "snake_case")]
pub enum AlertActionName {
    Acknowledge,
    Resolve,
    Reopen,
}

impl From<AlertActionName> for AlertAction {
    fn from(a: AlertActionName) -> Self {
        match a {
            AlertActionName::Acknowledge => AlertAction::Acknowledge,
            AlertActionName::Resolve => AlertAction::Resolve,
            AlertActionName::Reopen => AlertAction::Reopen,
        }
    }
}

/// A status change.
#[derive(Debug, Clone, Object)]
#[oai(deny_unknown_fields, example)]
pub struct AlertChange {
    pub action: AlertActionName,
    /// Why (kept in the alert's history and the audit trail).
    #[oai(validator(max_length = 2000))]
    pub comment: Option<String>,
}

/// A security event reported by another system or a person.
#[derive(Debug, Clone, Object)]
#[oai(deny_unknown_fields, example)]
pub struct SecurityEventIn {
    /// What reported it, e.g. `edr`, `vuln-scanner`, `jane@example.com`.
    #[oai(validator(min_length = 1, max_length = 100))]
    pub source: String,
    /// What happened, e.g. `malware.detected`.
    #[oai(validator(min_length = 1, max_length = 200))]
    pub event_type: String,
    /// `low`, `medium`, `high`, `critical`, or its number 1 to 4. High and Critical open an
    /// alert at once.
    pub severity: Severity,
    #[oai(validator(min_length = 1, max_length = 4000))]
    pub description: String,
    /// Any JSON object with more context.
    pub details: Option<serde_json::Value>,
}

example!(
    AlertChange,
    serde_json::json!({"action": "acknowledge", "comment": "Looking into it."})
);
example!(
    SecurityEventIn,
    serde_json::json!({"source": "edr", "event_type": "malware.detected", "severity": "high",
                       "description": "Cobalt Strike beacon on laptop-42",
                       "details": {"host": "laptop-42"}})
);

/// A stored security event.
#[derive(Debug, Clone, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct SecurityEventView {
    pub id: i64,
    pub uuid: String,
    pub source: String,
    pub event_type: String,
    pub severity: i64,
    pub description: String,
    pub created_by: String,
    pub created_at: DateTime<Utc>,
    /// The alert it opened (High and Critical).
    pub alert_id: Option<i64>,
}

#[derive(Debug, ApiResponse)]
pub enum SecurityEventCreated {
    /// Stored (and, for High and Critical, an alert opened).
    #[oai(status = 201)]
    Created(Json<SecurityEventView>),
}

/// Largest `details` accepted, serialised.
const MAX_DETAILS_BYTES: usize = 32 * 1024;
/// Linked events shown on one alert.
const MAX_LINKED_EVENTS: u32 = 100;

#[OpenApi(tag = "Tags::Alerts")]
impl AlertsApi {
    /// List alerts, newest first, filtered by status, severity and rule.
    #[oai(path = "/api/v1/alerts", method = "get", operation_id = "list_alerts")]
    #[allow(clippy::too_many_arguments)] // one per query parameter, as poem-openapi wants
    async fn list(
        &self,
        auth: BearerAuth,
        state: Data<&ApiState>,
        status: Query<Option<AlertStatusName>>,
        /// `low`, `medium`, `high`, `critical`, or 1 to 4.
        severity: Query<Option<Severity>>,
        /// A rule id, e.g. `okta_brute_force_ip`.
        #[oai(validator(min_length = 1, max_length = 100))]
        rule: Query<Option<String>>,
        /// 1-based page number (default 1).
        #[oai(validator(minimum(value = "1"), maximum(value = "1000000")))]
        page: Query<Option<u32>>,
        /// Alerts per page, 1 to 500 (default 50).
        #[oai(validator(minimum(value = "1"), maximum(value = "500")))]
        page_size: Query<Option<u32>>,
    ) -> ApiResult<Json<AlertList>> {
        let _ = &auth;
        let page = page.0.unwrap_or(1);
        let page_size = page_size.0.unwrap_or(50);
        let query = AlertQuery {
            status: status.0.map(Into::into),
            severity: severity.0.map(|s| s.as_str().to_owned()),
            rule_id: rule.0.clone(),
            page,
            page_size,
        };
        Ok(Json(alert_list(state.db(), &query).await?))
    }

    /// Read one alert with its events, escalation history and status changes.
    #[oai(
        path = "/api/v1/alerts/:id",
        method = "get",
        operation_id = "get_alert"
    )]
    async fn get(
        &self,
        auth: BearerAuth,
        state: Data<&ApiState>,
        id: Path<i64>,
    ) -> ApiResult<Json<AlertDetail>> {
        let _ = &auth;
        let Some(alert) = alerts::get(state.db(), id.0).await? else {
            return Err(ApiError::not_found(format!("no alert {}", id.0)));
        };
        let db = state.db();
        let uuids = alerts::linked_events(db, alert.id, MAX_LINKED_EVENTS).await?;
        let linked = linked_events(state.0, uuids).await?;
        let mut sent = notifications::for_alert(db, alert.id).await?;
        let notifications_dead = sent
            .iter()
            .filter(|n| n.status == NotificationStatus::Dead)
            .count() as i64;
        let escalations = alerts::escalations(db, alert.id)
            .await?
            .into_iter()
            .map(|e| {
                let (mine, rest): (Vec<_>, Vec<_>) =
                    sent.drain(..).partition(|n| n.escalation_id == e.id);
                sent = rest;
                escalation_view(e, mine)
            })
            .collect();
        let transitions = alerts::transitions(db, alert.id)
            .await?
            .into_iter()
            .map(|t| TransitionView {
                action: t.action,
                from_status: t.from_status,
                to_status: t.to_status,
                actor: t.actor,
                comment: t.comment,
                at: t.at,
            })
            .collect();
        Ok(Json(AlertDetail {
            alert: alert.into(),
            events: linked,
            escalations,
            notifications_dead,
            transitions,
        }))
    }

    /// Acknowledge, resolve or reopen an alert (admin). An action that does not apply to
    /// the alert's status is 409.
    #[oai(
        path = "/api/v1/alerts/:id",
        method = "patch",
        operation_id = "update_alert"
    )]
    async fn update(
        &self,
        auth: BearerAuth,
        state: Data<&ApiState>,
        rid: Data<&RequestId>,
        id: Path<i64>,
        body: Json<AlertChange>,
    ) -> ApiResult<Json<AlertView>> {
        auth.0.require_admin()?;
        let action: AlertAction = body.0.action.into();
        let now = Utc::now();
        let Some(current) = alerts::get(state.db(), id.0).await? else {
            return Err(ApiError::not_found(format!("no alert {}", id.0)));
        };
        // A reopened alert starts a new escalation round at the policy's reopen level, timed
        // from now.
        let restart = current
            .escalation_policy
            .as_deref()
            .and_then(|name| state.settings().escalation.policy(name))
            .map(|p| Restart {
                from_level: i64::try_from(p.reopen_level).unwrap_or(1),
                due_at: p.due_at(p.reopen_level, now, now),
            })
            .unwrap_or(Restart {
                from_level: 1,
                due_at: None,
            });
        let who = auth.0.actor().label();
        let comment = body.0.comment.as_deref();
        let outcome =
            alerts::transition(state.db(), id.0, action, &who, comment, now, restart).await?;
        let alert = match outcome {
            TransitionOutcome::Done(alert) => *alert,
            TransitionOutcome::NotFound => {
                return Err(ApiError::not_found(format!("no alert {}", id.0)));
            }
            TransitionOutcome::Invalid(status) => {
                let (from, _) = action.transition();
                let allowed: Vec<&str> = from.iter().map(|s| s.as_str()).collect();
                return Err(ApiError::conflict(format!(
                    "alert {} is {status}; {} applies to {} alerts",
                    id.0,
                    action.as_str(),
                    allowed.join(" or ")
                )));
            }
        };
        let target = alert.id.to_string();
        audit::record(
            state.engine(),
            Entry {
                actor: auth.0.actor(),
                action: match action {
                    AlertAction::Acknowledge => "alert.acknowledge",
                    AlertAction::Resolve => "alert.resolve",
                    AlertAction::Reopen => "alert.reopen",
                },
                target_type: "alert",
                target_id: &target,
                details: serde_json::json!({ "from": current.status, "to": alert.status,
                                             "comment": comment }),
                request_id: Some(&rid.0.0),
                job_id: None,
            },
        )
        .await;
        if matches!(action, AlertAction::Acknowledge | AlertAction::Resolve) {
            queue_pagerduty_follow_ups(state.0, &alert, action).await;
        }
        if action == AlertAction::Reopen && alert.next_escalation_at.is_some() {
            queue_escalation(
                state.0,
                Some(alert.id),
                &format!("alert-{}-reopened-{}", alert.id, now.timestamp_millis()),
            )
            .await;
        }
        Ok(Json(alert.into()))
    }

    /// Retry a dead notification of an alert (admin, audited): its job runs again (the
    /// notification's errors are kept; its outcome is recorded as before). 409 unless it is
    /// dead.
    #[oai(
        path = "/api/v1/alerts/:id/notifications/:notification_id/retry",
        method = "post",
        operation_id = "retry_alert_notification"
    )]
    async fn retry_notification(
        &self,
        auth: BearerAuth,
        state: Data<&ApiState>,
        rid: Data<&RequestId>,
        id: Path<i64>,
        notification_id: Path<i64>,
    ) -> ApiResult<Json<NotificationRetried>> {
        auth.0.require_admin()?;
        let db = state.db();
        let missing = || {
            ApiError::not_found(format!(
                "alert {} has no notification {}",
                id.0, notification_id.0
            ))
        };
        let n = notifications::get(db, notification_id.0)
            .await?
            .filter(|n| n.alert_id == id.0)
            .ok_or_else(missing)?;
        if n.status != NotificationStatus::Dead {
            return Err(ApiError::conflict(format!(
                "notification {} is {}; only a dead notification can be retried",
                n.id, n.status
            )));
        }
        let Some(job_id) = n.job_id.clone() else {
            return Err(ApiError::conflict(format!(
                "notification {} was never queued; the escalation run queues it",
                n.id
            )));
        };
        // The job first: a notification marked queued must have a job that will run.
        let job = state.engine().retry(&job_id).await.map_err(|e| match e {
            vigil_queue::EngineError::NotFound(_) => ApiError::conflict(format!(
                "notification {}'s job {job_id} is gone (past the email/notification \
                 queue's retain_dead)",
                n.id
            )),
            other => other.into(),
        })?;
        let now = Utc::now();
        // A fast worker may already have run the job: then the row says what it did.
        let after = match notifications::reset_for_retry(db, n.id, now).await? {
            Some(after) => after,
            None => notifications::get(db, n.id).await?.unwrap_or(n.clone()),
        };
        let target = id.0.to_string();
        audit::record(
            state.engine(),
            Entry {
                actor: auth.0.actor(),
                action: "alert.notification.retry",
                target_type: "alert",
                target_id: &target,
                details: serde_json::json!({ "notification_id": n.id, "channel": n.channel,
                    "target": n.target_shown, "level": n.level, "round": n.round,
                    "job_id": job_id }),
                request_id: Some(&rid.0.0),
                job_id: Some(&job_id),
            },
        )
        .await;
        tracing::info!(alert_id = id.0, notification_id = n.id, %job_id, "notification retried");
        Ok(Json(NotificationRetried {
            notification: after.into(),
            job_status: job.status.to_string(),
        }))
    }

    /// Report a security event (admin). Severity 3 (High) and 4 (Critical) open an alert
    /// at once, which escalates like any other.
    #[oai(
        path = "/api/v1/events/security",
        method = "post",
        operation_id = "create_security_event",
        tag = "Tags::Events"
    )]
    async fn create_security_event(
        &self,
        auth: BearerAuth,
        state: Data<&ApiState>,
        rid: Data<&RequestId>,
        body: Json<SecurityEventIn>,
    ) -> ApiResult<SecurityEventCreated> {
        auth.0.require_admin()?;
        let input = body.0;
        let details = match input.details {
            None => serde_json::json!({}),
            Some(v @ serde_json::Value::Object(_)) => v,
            Some(_) => return Err(ApiError::unprocessable("details: must be a JSON object")),
        };
        let details_text = details.to_string();
        if details_text.len() > MAX_DETAILS_BYTES {
            return Err(ApiError::unprocessable(format!(
                "details: must be at most {MAX_DETAILS_BYTES} bytes of JSON"
            )));
        }
        for (field, value) in [("source", &input.source), ("event_type", &input.event_type)] {
            if value.trim().is_empty() || value.chars().any(char::is_control) {
                return Err(ApiError::unprocessable(format!(
                    "{field}: must be non-blank text without control characters"
                )));
            }
        }
        let event = security_events::NewSecurityEvent {
            uuid: uuid::Uuid::new_v4().to_string(),
            source: input.source.clone(),
            event_type: input.event_type.clone(),
            severity: input.severity.level(),
            description: input.description.clone(),
            details: details_text,
            created_by: auth.0.actor().label(),
            created_at: Utc::now(),
        };
        let (stored, alert_id) =
            report_security_event(state.0, auth.0.actor(), event, &rid.0.0).await?;
        Ok(SecurityEventCreated::Created(Json(SecurityEventView {
            id: stored.id,
            uuid: stored.uuid,
            source: stored.source,
            event_type: stored.event_type,
            severity: stored.severity,
            description: stored.description,
            created_by: stored.created_by,
            created_at: stored.created_at,
            alert_id,
        })))
    }
}

/// Stores a security event reported by `actor`, audits it (`security_event.create`), queues
/// an escalation run (which puts it through the detection rules) and, for High (3) and
/// Critical (4), opens its alert at once. Returns the stored event and the alert's id.
pub(crate) async fn report_security_event(
    state: &ApiState,
    actor: AuditActor,
    event: security_events::NewSecurityEvent,
    request_id: &str,
) -> ApiResult<(security_events::SecurityEvent, Option<i64>)> {
    let stored = security_events::insert(state.db(), &event).await?;
    tracing::info!(id = stored.id, source = %stored.source, event_type = %stored.event_type,
        severity = stored.severity, "security event reported");
    let target = stored.uuid.clone();
    audit::record(
        state.engine(),
        Entry {
            actor,
            action: "security_event.create",
            target_type: "security_event",
            target_id: &target,
            details: serde_json::json!({ "source": stored.source, "event_type": stored.event_type,
                                         "severity": stored.severity }),
            request_id: Some(request_id),
            job_id: None,
        },
    )
    .await;
    // The detection rules see it in the next escalation run: queue one now.
    queue_escalation(state, None, &format!("security-event-{}", stored.uuid)).await;
    let mut alert_id = None;
    if stored.severity >= 3 {
        let id = open_security_alert(state, &stored, request_id).await?;
        security_events::set_alert(state.db(), stored.id, id).await?;
        alert_id = Some(id);
    }
    Ok((stored, alert_id))
}

/// Opens the alert of a High or Critical security event and starts its escalation.
async fn open_security_alert(
    state: &ApiState,
    event: &security_events::SecurityEvent,
    request_id: &str,
) -> ApiResult<i64> {
    let severity = if event.severity >= 4 {
        "critical"
    } else {
        "high"
    };
    let now = Utc::now();
    let hit = alerts::AlertHit {
        rule_id: SECURITY_EVENT_RULE.to_owned(),
        title: format!("{}: {}", event.source, event.event_type),
        description: event.description.clone(),
        severity: severity.to_owned(),
        // Each reported event is its own alert.
        group_key: event.uuid.clone(),
        event_uuid: event.uuid.clone(),
        seen_at: event.created_at,
        window_uuids: Vec::new(),
        window_count: 1,
        first_seen: event.created_at,
        dedup_window_ms: 1,
        details: serde_json::json!({ "source": event.source, "event_type": event.event_type,
                                     "details": serde_json::from_str::<serde_json::Value>(&event.details).unwrap_or_default() })
            .to_string(),
        escalation: None,
    };
    let (raised, follow_ups) = alert_open::open_or_update(
        state.db(),
        hit,
        &state.settings().escalation,
        now,
        serde_json::json!({ "security_event": event.uuid }),
        Some(request_id),
    )
    .await?;
    if let Some(follow_ups) = follow_ups {
        audit::record_job(state.engine(), follow_ups.audit).await;
        if let Some((job, key)) = follow_ups.escalate {
            enqueue_escalation(state, job, key).await;
        }
    }
    Ok(raised.alert_id)
}

/// Queues an escalation run, for one alert or all (a run also puts new security events
/// through the detection rules); the cron run catches up if this fails.
async fn queue_escalation(state: &ApiState, alert_id: Option<i64>, key: &str) {
    let job = AlertEscalationJob {
        alert_id,
        ..Default::default()
    };
    enqueue_escalation(state, job, key.to_owned()).await;
}

async fn enqueue_escalation(state: &ApiState, job: AlertEscalationJob, key: String) {
    if let Err(e) = state.engine().enqueue_job(&job, Some(key)).await {
        tracing::warn!(alert_id = ?job.alert_id, error = %e, "could not queue an escalation run");
    }
}

/// Tells every PagerDuty channel this round's escalation triggered that the alert was
/// acknowledged or resolved (an `acknowledge` / `resolve` event with the alert's dedup key),
/// as notifications of their own. Failures are logged: the alert's change stands.
async fn queue_pagerduty_follow_ups(state: &ApiState, alert: &Alert, action: AlertAction) {
    let event = match action {
        AlertAction::Acknowledge => NotificationEvent::Acknowledge,
        AlertAction::Resolve => NotificationEvent::Resolve,
        AlertAction::Reopen => return,
    };
    let db = state.db();
    let all = match notifications::for_alert(db, alert.id).await {
        Ok(all) => all,
        Err(e) => {
            tracing::warn!(alert_id = alert.id, error = %e, "could not read the alert's notifications");
            return;
        }
    };
    // The latest trigger per PagerDuty channel in this round that went (or is going) out.
    let mut latest: std::collections::BTreeMap<&str, &Notification> = Default::default();
    for n in all.iter().filter(|n| {
        n.channel == Channel::Pagerduty
            && n.event == NotificationEvent::Trigger
            && n.round == alert.escalation_round
            && (n.status == NotificationStatus::Sent
                || (n.status == NotificationStatus::Retrying && n.attempts > 0))
    }) {
        latest.insert(n.target.as_str(), n);
    }
    let now = Utc::now();
    for (target, trigger) in latest {
        let new = NewNotification {
            channel: Channel::Pagerduty,
            event,
            target: target.to_owned(),
            target_shown: trigger.target_shown.clone(),
        };
        let follow_up = match notifications::record_follow_up(db, trigger.escalation_id, &new, now)
            .await
        {
            Ok(f) if f.job_id.is_none() => f,
            Ok(_) => continue, // queued before
            Err(e) => {
                tracing::warn!(alert_id = alert.id, error = %e, "could not record a PagerDuty follow-up");
                continue;
            }
        };
        let delivery = NotificationJob::new(alert.id, follow_up.id);
        let key = delivery.idempotency_key();
        match state.engine().enqueue_job(&delivery, Some(key)).await {
            Ok(q) => {
                if let Err(e) = notifications::set_job(db, follow_up.id, &q.job.id).await {
                    tracing::warn!(alert_id = alert.id, error = %e, "could not record a follow-up's job");
                }
            }
            Err(e) => {
                tracing::warn!(alert_id = alert.id, error = %e, "could not queue a PagerDuty follow-up");
            }
        }
    }
}

/// The linked events of an alert, in link order, in two queries.
async fn linked_events(state: &ApiState, uuids: Vec<String>) -> ApiResult<Vec<LinkedEvent>> {
    let mut okta = events::get_many(state.db(), &uuids).await?;
    let mut reported = security_events::get_many(state.db(), &uuids).await?;
    Ok(uuids
        .into_iter()
        .map(|uuid| {
            if let Some(e) = okta.remove(&uuid) {
                LinkedEvent {
                    uuid,
                    kind: "okta".to_owned(),
                    published: Some(e.published),
                    event_type: Some(e.event_type),
                    actor: e.actor_alternate_id.or(e.actor_id),
                    client_ip: e.client_ip,
                    outcome: e.outcome_result,
                    message: e.display_message,
                }
            } else if let Some(e) = reported.remove(&uuid) {
                LinkedEvent {
                    uuid,
                    kind: "security".to_owned(),
                    published: Some(e.created_at),
                    event_type: Some(e.event_type),
                    actor: Some(e.source),
                    client_ip: None,
                    outcome: None,
                    message: Some(e.description),
                }
            } else {
                LinkedEvent {
                    uuid,
                    kind: "unknown".to_owned(),
                    published: None,
                    event_type: None,
                    actor: None,
                    client_ip: None,
                    outcome: None,
                    message: None,
                }
            }
        })
        .collect())
}

fn escalation_view(e: alerts::Escalation, sent: Vec<Notification>) -> EscalationView {
    let triggers: Vec<&Notification> = sent
        .iter()
        .filter(|n| n.event == notifications::NotificationEvent::Trigger)
        .collect();
    let count = |s: NotificationStatus| triggers.iter().filter(|n| n.status == s).count();
    let status = if e.suppressed_at.is_some() && triggers.iter().all(|n| n.attempts == 0) {
        "suppressed"
    } else if triggers.is_empty()
        || count(NotificationStatus::Queued) + count(NotificationStatus::Retrying) > 0
    {
        "pending"
    } else if count(NotificationStatus::Sent) == triggers.len() {
        "notified"
    } else if count(NotificationStatus::Dead) == triggers.len() {
        "failed"
    } else if count(NotificationStatus::Suppressed) == triggers.len() {
        "suppressed"
    } else {
        "partial"
    };
    EscalationView {
        round: e.round,
        level: e.level,
        policy: e.policy,
        status: status.to_owned(),
        channels: e.targets.channels.clone(),
        queued_at: e.queued_at,
        suppressed_at: e.suppressed_at,
        failed_at: e.failed_at,
        notifications: sent.into_iter().map(Into::into).collect(),
        webhooks: e
            .targets
            .webhooks
            .iter()
            .map(|w| redact_webhook(w))
            .collect(),
        emails: e.targets.emails,
        escalated_at: e.escalated_at,
        notified_at: e.notified_at,
    }
}
