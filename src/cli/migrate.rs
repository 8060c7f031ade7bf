//! `bahinlink migrate [status | reset --yes]`.

use crate::{
    cli::{CliError, MigrateAction},
    configuration::Settings,
    storage::{
        migrate::{self, MigrationState},
        pool::{connect_one, DatabaseTarget},
    },
};

pub(super) async fn migrate(
    settings: Settings,
    action: Option<MigrateAction>,
) -> Result<(), CliError> {
    if let Some(MigrateAction::Reset { yes: false }) = action {
        return Err(CliError::Usage(
            "`migrate reset` drops every table and row of the database; run `bahinlink migrate reset --yes` to confirm"
                .into(),
        ));
    }
    let target = DatabaseTarget::open(&settings.database)
        .await
        .map_err(CliError::failed)?;
    let result = run(&settings, &target, action).await;
    target.shutdown().await;
    result
}

async fn run(
    settings: &Settings,
    target: &DatabaseTarget,
    action: Option<MigrateAction>,
) -> Result<(), CliError> {
    let mut client = connect_one(&target.url, &settings.database)
        .await
        .map_err(CliError::failed)?;
    match action {
        None => {
            let applied = migrate::apply(&mut client, None)
                .await
                .map_err(CliError::failed)?;
            if applied.is_empty() {
                println!("schema is up to date; no migration applied");
            }
            for m in applied {
                println!("applied {} {}", m.version, m.name);
            }
        }
        Some(MigrateAction::Reset { .. }) => {
            let applied = migrate::reset(&mut client)
                .await
                .map_err(CliError::failed)?;
            println!(
                "schema dropped and rebuilt; {} migrations applied",
                applied.len()
            );
        }
        Some(MigrateAction::Status) => {
            let rows = migrate::status(&client).await.map_err(CliError::failed)?;
            println!(
                "{:<16} {:<36} {:<9} {:<64} APPLIED AT",
                "VERSION", "NAME", "STATE", "CHECKSUM (SHA-256)"
            );
            for row in rows {
                let (state, applied_at) = match &row.state {
                    MigrationState::Applied { applied_at } => ("applied", applied_at.to_rfc3339()),
                    MigrationState::Pending => ("pending", String::new()),
                    MigrationState::Modified { applied_checksum } => {
                        ("MODIFIED", format!("recorded checksum {applied_checksum}"))
                    }
                    MigrationState::Unknown => ("unknown", "applied by a newer binary".into()),
                };
                println!(
                    "{:<16} {:<36} {:<9} {:<64} {}",
                    row.version, row.name, state, row.checksum, applied_at
                );
            }
        }
    }
    Ok(())
}
