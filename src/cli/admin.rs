//! `bahinlink admin create --email E (--password P | --password-stdin)`: bootstraps the
//! first ADMIN user. Prints the new user's id on stdout.

use std::io::Read;

use crate::{
    auth::password::{hash_password, Password},
    cli::CliError,
    configuration::Settings,
    storage::{
        pool::{connect_one, DatabaseTarget},
        row::RowExt,
    },
};

pub(super) async fn create(
    settings: Settings,
    email: String,
    password: Option<String>,
    password_stdin: bool,
) -> Result<(), CliError> {
    let password = match (password, password_stdin) {
        (Some(p), false) => p,
        (None, true) => {
            let mut text = String::new();
            std::io::stdin().read_to_string(&mut text).map_err(|e| {
                CliError::Usage(format!("cannot read the password from stdin: {e}"))
            })?;
            text.trim_end_matches(['\r', '\n']).to_owned()
        }
        _ => {
            return Err(CliError::Usage(
                "give exactly one of --password or --password-stdin".into(),
            ))
        }
    };
    let password = Password::parse(password).map_err(CliError::Usage)?;
    let email = crate::domain::email::parse_email(&email)
        .ok_or_else(|| CliError::Usage(format!("--email {email:?} is not an email address")))?;
    let cost = settings.auth.hash_cost();
    let hash = tokio::task::spawn_blocking(move || hash_password(&password, cost))
        .await
        .map_err(|e| CliError::Failed(format!("hashing failed: {e}")))?;

    let target = DatabaseTarget::open(&settings.database)
        .await
        .map_err(CliError::failed)?;
    let result = async {
        let mut client = connect_one(&target.url, &settings.database).await.map_err(CliError::failed)?;
        crate::storage::migrate::apply(&mut client, None).await.map_err(CliError::failed)?;
        let tx = client.transaction().await.map_err(CliError::failed)?;
        let exists = tx
            .query_opt("SELECT id FROM users WHERE lower(email) = $1 AND deleted_at IS NULL", &[&email])
            .await
            .map_err(CliError::failed)?;
        if exists.is_some() {
            return Err(CliError::Failed(format!("a user with email {email} already exists")));
        }
        let id: uuid::Uuid = tx
            .query_one(
                "INSERT INTO users (email, password_hash, role) VALUES ($1, $2, 'ADMIN') RETURNING id",
                &[&email, &hash],
            )
            .await
            .map_err(CliError::failed)?
            .col("id")
            .map_err(CliError::failed)?;
        tx.execute(
            "INSERT INTO audit_logs (action, entity_type, entity_id, new_values)
             VALUES ('user.create', 'user', $1, jsonb_build_object('email', $2::text, 'role', 'ADMIN', 'via', 'cli'))",
            &[&id, &email],
        )
        .await
        .map_err(CliError::failed)?;
        tx.commit().await.map_err(CliError::failed)?;
        println!("{id}");
        Ok(())
    }
    .await;
    target.shutdown().await;
    result
}
