//! The database's enum types as Rust enums: the same labels in JSON and in PostgreSQL.

/// Declares an enum mapped to a PostgreSQL enum type and to SCREAMING_SNAKE_CASE JSON.
macro_rules! db_enum {
    ($(#[$meta:meta])* $name:ident = $pg:tt { $($variant:ident),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(
            Debug, Clone, Copy, PartialEq, Eq, Hash,
            serde::Serialize, serde::Deserialize,
            postgres_types::ToSql, postgres_types::FromSql,
            utoipa::ToSchema,
        )]
        #[postgres(name = $pg, rename_all = "SCREAMING_SNAKE_CASE")]
        #[serde(rename_all = "SCREAMING_SNAKE_CASE")]
        pub enum $name { $($variant),+ }

        impl $name {
            /// Every label, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The label, as in JSON and the database.
            pub fn label(self) -> String {
                serde_json::to_value(self)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_owned))
                    .unwrap_or_default()
            }
        }
    };
}

db_enum!(/// A user's role (seed `UserRole`).
    UserRole = "UserRole" { Admin, Supervisor, Agent, Client });
db_enum!(/// Whether a user may log in (seed `UserStatus`).
    UserStatus = "UserStatus" { Active, Inactive, Suspended, Pending });
db_enum!(/// An agent's employment status (seed `AgentStatus`).
    AgentStatus = "AgentStatus" { Active, Inactive, OnLeave, Terminated });
db_enum!(/// A client company's status (seed `ClientStatus`).
    ClientStatus = "ClientStatus" { Active, Inactive, Suspended, Terminated });
db_enum!(/// Kind of shift (seed `ShiftType`).
    ShiftType = "ShiftType" { Regular, Overtime, Emergency, Training });
db_enum!(/// Life cycle of a shift (seed `ShiftStatus`).
    ShiftStatus = "ShiftStatus" { Scheduled, Confirmed, InProgress, Completed, Cancelled, NoShow });
db_enum!(/// How a clock-in was proven (seed `AttendanceMethod`).
    AttendanceMethod = "AttendanceMethod" { Gps, QrCode, Manual, Nfc });
db_enum!(/// State of an attendance record (seed `AttendanceStatus`).
    AttendanceStatus = "AttendanceStatus" { ClockedIn, OnBreak, ClockedOut, Incomplete });
db_enum!(/// Urgency (seed `Priority`).
    Priority = "Priority" { Low, Normal, High, Urgent, Critical });
db_enum!(/// How an agent came to be on a shift (seed `AssignmentMethod`).
    AssignmentMethod = "AssignmentMethod" { Manual, Auto, IntelligentAuto, EmergencyAuto });
db_enum!(/// Whether a site is operated.
    SiteStatus = "SiteStatus" { Active, Inactive, Maintenance, Closed });
db_enum!(/// What kind of place a site is.
SiteType = "SiteType" {
    Commercial, Residential, Industrial, Government, Retail, Healthcare, Educational,
    Construction, Event, Other
});
db_enum!(/// Kind of leave.
    TimeOffType = "TimeOffType" { Vacation, Sick, Personal, Bereavement, Training, Unpaid, Other });
db_enum!(/// Life cycle of a time-off request.
    TimeOffStatus = "TimeOffStatus" { Pending, Approved, Rejected, Cancelled });
db_enum!(/// A patrol checkpoint: printed QR code or NFC tag.
    CheckpointType = "CheckpointType" { QrCode, NfcTag });
db_enum!(/// What raised an alert (`alerts.kind`).
AlertKind = "AlertKind" {
    GeofenceViolation, Panic, MissedCheckpoint, LoneWorker, DeviceOffline, LateClockIn, NoShow
});
db_enum!(/// How urgent an alert is: decides how soon an unacknowledged one escalates.
    AlertSeverity = "AlertSeverity" { Low, Medium, High, Critical });
db_enum!(/// How a tour round went (`tour_rounds.status`).
    TourRoundStatus = "TourRoundStatus" { Open, Completed, Partial, Missed });
db_enum!(/// Where a webhook delivery stands.
    WebhookDeliveryStatus = "WebhookDeliveryStatus" { Pending, Delivered, Failed });
db_enum!(/// A notification's kind (seed `NotificationType`).
    NotificationType = "NotificationType" { Info, Warning, Urgent, Emergency, System });

impl ShiftStatus {
    /// Whether the life cycle allows moving from `self` to `next`.
    ///
    /// SCHEDULED → CONFIRMED → IN_PROGRESS → COMPLETED, with CANCELLED possible before the
    /// end and NO_SHOW before it starts; CONFIRMED may fall back to SCHEDULED (agent
    /// removed). COMPLETED, CANCELLED and NO_SHOW are final.
    pub fn can_become(self, next: ShiftStatus) -> bool {
        use ShiftStatus::*;
        matches!(
            (self, next),
            (Scheduled, Confirmed | InProgress | Cancelled | NoShow)
                | (Confirmed, Scheduled | InProgress | Cancelled | NoShow)
                | (InProgress, Completed | Cancelled)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_match_the_database() {
        assert_eq!(
            serde_json::to_string(&AttendanceMethod::QrCode).unwrap(),
            "\"QR_CODE\""
        );
        assert_eq!(
            serde_json::to_string(&ShiftStatus::NoShow).unwrap(),
            "\"NO_SHOW\""
        );
        assert_eq!(
            serde_json::to_string(&AssignmentMethod::IntelligentAuto).unwrap(),
            "\"INTELLIGENT_AUTO\""
        );
    }

    #[test]
    fn shift_life_cycle() {
        use ShiftStatus::*;
        assert!(Scheduled.can_become(Confirmed));
        assert!(InProgress.can_become(Completed));
        assert!(!Completed.can_become(InProgress));
        assert!(!Cancelled.can_become(Scheduled));
        assert!(!Scheduled.can_become(Completed));
        assert!(!Scheduled.can_become(Scheduled));
    }
}
