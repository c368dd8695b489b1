//! People: the first-run administrator, password changes, and browser sessions (stored
//! by the digest of the cookie's secret, ended together when the password changes).

use serde_json::json;
use serverpulse_domain::{Role, TokenDigest};
use serverpulse_proto::alert::Severity;
use serverpulse_store::{
    ApiToken, EventKind, NewSession, NewUser, StoreError, StoreResult, User, UserId, UserWithPassword,
};
use sqlx::Row;

use crate::SqlStore;
use crate::rows::{self, db};
use crate::store::record_event;

impl SqlStore {
    pub(crate) async fn insert_first_user(&self, new: NewUser, now: i64) -> StoreResult<Option<User>> {
        let mut tx = self.begin().await?;
        crate::dialect::lock_users(&mut tx).await?;
        let row = sqlx::query(
            "INSERT INTO users (email, role, password_hash, created_at) \
             SELECT $1, $2, $3, $4 WHERE NOT EXISTS (SELECT 1 FROM users) \
             RETURNING id, email, role, created_at",
        )
        .bind(&new.email)
        .bind(new.role.as_str())
        .bind(&new.password_hash)
        .bind(now)
        .fetch_optional(&mut *tx)
        .await
        .map_err(db)?;
        let Some(row) = row else { return Ok(None) };
        let user = rows::user(&row)?;
        let message = format!("first administrator {} created", user.email);
        record_event(&mut tx, None, EventKind::UserChanged, Severity::Info, &message, json!({"user": user.email}), now)
            .await?;
        tx.commit().await.map_err(db)?;
        Ok(Some(user))
    }

    /// Fails with a conflict when `id` is the only administrator left. Holds the users
    /// table against other writers until the transaction ends, so two replicas cannot
    /// each demote one of the last two administrators.
    async fn keep_an_admin(tx: &mut crate::dialect::Conn, id: UserId) -> StoreResult<()> {
        crate::dialect::lock_users(&mut *tx).await?;
        let others: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM users WHERE role = 'admin' AND id <> $1")
            .bind(id)
            .fetch_one(&mut *tx)
            .await
            .map_err(db)?;
        let is_admin: Option<String> = sqlx::query_scalar("SELECT role FROM users WHERE id = $1")
            .bind(id)
            .fetch_optional(&mut *tx)
            .await
            .map_err(db)?;
        match is_admin.as_deref() {
            None => Err(StoreError::NotFound),
            Some("admin") if others == 0 => {
                Err(StoreError::Conflict("the last administrator must stay one".to_owned()))
            }
            Some(_) => Ok(()),
        }
    }

    pub(crate) async fn change_role(&self, id: UserId, role: Role, by: &str, now: i64) -> StoreResult<User> {
        let mut tx = self.begin().await?;
        if role != Role::Admin {
            Self::keep_an_admin(&mut tx, id).await?;
        }
        let row = sqlx::query("UPDATE users SET role = $1 WHERE id = $2 RETURNING id, email, role, created_at")
            .bind(role.as_str())
            .bind(id)
            .fetch_optional(&mut *tx)
            .await
            .map_err(db)?
            .ok_or(StoreError::NotFound)?;
        let user = rows::user(&row)?;
        let message = format!("{by} made {} {}", user.email, role.as_str());
        let details = json!({"user": user.email, "role": role.as_str(), "by": by});
        record_event(&mut tx, None, EventKind::UserChanged, Severity::Info, &message, details, now).await?;
        tx.commit().await.map_err(db)?;
        Ok(user)
    }

    pub(crate) async fn remove_user(&self, id: UserId, by: &str, now: i64) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        Self::keep_an_admin(&mut tx, id).await?;
        let email: String = sqlx::query_scalar("DELETE FROM users WHERE id = $1 RETURNING email")
            .bind(id)
            .fetch_one(&mut *tx)
            .await
            .map_err(db)?;
        let message = format!("{by} removed user {email}");
        let details = json!({"user": email, "by": by});
        record_event(&mut tx, None, EventKind::UserChanged, Severity::Info, &message, details, now).await?;
        tx.commit().await.map_err(db)
    }

    pub(crate) async fn api_tokens(&self) -> StoreResult<Vec<(ApiToken, String)>> {
        let found = sqlx::query(
            "SELECT t.id, t.user_id, t.name, t.created_at, u.email FROM api_tokens t JOIN users u ON u.id = t.user_id \
             WHERE t.revoked_at IS NULL ORDER BY t.created_at DESC, t.id",
        )
        .fetch_all(&self.reader)
        .await
        .map_err(db)?;
        found.iter().map(|row| Ok((rows::api_token(row)?, row.try_get("email").map_err(db)?))).collect()
    }

    pub(crate) async fn revoke_token(&self, token_id: &str, by: &str, now: i64) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        let row = sqlx::query(
            "UPDATE api_tokens SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL \
             RETURNING name, (SELECT email FROM users WHERE users.id = user_id) AS email",
        )
        .bind(now)
        .bind(token_id)
        .fetch_optional(&mut *tx)
        .await
        .map_err(db)?
        .ok_or(StoreError::NotFound)?;
        let (name, email): (String, String) = (row.try_get("name").map_err(db)?, row.try_get("email").map_err(db)?);
        let message = format!("{by} revoked API token {name:?} of {email}");
        let details = json!({"token": token_id, "name": name, "user": email, "by": by});
        record_event(&mut tx, None, EventKind::UserChanged, Severity::Info, &message, details, now).await?;
        tx.commit().await.map_err(db)
    }

    pub(crate) async fn count_users(&self) -> StoreResult<u64> {
        let count: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM users").fetch_one(&self.reader).await.map_err(db)?;
        Ok(u64::try_from(count).unwrap_or(0))
    }

    pub(crate) async fn user_with_password(&self, id: UserId) -> StoreResult<UserWithPassword> {
        let row = sqlx::query("SELECT id, email, role, created_at, password_hash FROM users WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.reader)
            .await
            .map_err(db)?
            .ok_or(StoreError::NotFound)?;
        Ok(UserWithPassword { user: rows::user(&row)?, password_hash: row.try_get("password_hash").map_err(db)? })
    }

    pub(crate) async fn replace_password(
        &self,
        id: UserId,
        password_hash: &str,
        keep: Option<&TokenDigest>,
        now: i64,
    ) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        let email: Option<String> =
            sqlx::query_scalar("UPDATE users SET password_hash = $1 WHERE id = $2 RETURNING email")
                .bind(password_hash)
                .bind(id)
                .fetch_optional(&mut *tx)
                .await
                .map_err(db)?;
        let email = email.ok_or(StoreError::NotFound)?;
        let ended = sqlx::query("DELETE FROM sessions WHERE user_id = $1 AND id IS DISTINCT FROM $2")
            .bind(id)
            .bind(keep.map(TokenDigest::to_hex))
            .execute(&mut *tx)
            .await
            .map_err(db)?
            .rows_affected();
        let message = format!("{email} changed their password");
        let details = json!({"user": email, "other_sessions_ended": ended});
        record_event(&mut tx, None, EventKind::UserChanged, Severity::Info, &message, details, now).await?;
        tx.commit().await.map_err(db)
    }

    pub(crate) async fn insert_session(&self, session: NewSession, now: i64) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        sqlx::query("DELETE FROM sessions WHERE expires_at <= $1").bind(now).execute(&mut *tx).await.map_err(db)?;
        let email: String = sqlx::query_scalar(
            "INSERT INTO sessions (id, user_id, created_at, expires_at) VALUES ($1, $2, $3, $4) \
             RETURNING (SELECT email FROM users WHERE id = user_id)",
        )
        .bind(session.id.to_hex())
        .bind(session.user_id)
        .bind(now)
        .bind(session.expires_at)
        .fetch_one(&mut *tx)
        .await
        .map_err(rows::missing_if_foreign_key)?;
        let message = format!("{email} signed in");
        record_event(&mut tx, None, EventKind::UserSession, Severity::Info, &message, json!({"user": email}), now)
            .await?;
        tx.commit().await.map_err(db)
    }

    pub(crate) async fn user_of_session(&self, id: &TokenDigest, now: i64) -> StoreResult<Option<User>> {
        let row = sqlx::query(
            "SELECT u.id, u.email, u.role, u.created_at FROM sessions s JOIN users u ON u.id = s.user_id \
             WHERE s.id = $1 AND s.expires_at > $2",
        )
        .bind(id.to_hex())
        .bind(now)
        .fetch_optional(&self.reader)
        .await
        .map_err(db)?;
        row.as_ref().map(rows::user).transpose()
    }

    pub(crate) async fn end_session(&self, id: &TokenDigest, now: i64) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        let email: Option<String> = sqlx::query_scalar(
            "DELETE FROM sessions WHERE id = $1 RETURNING (SELECT email FROM users WHERE users.id = user_id)",
        )
        .bind(id.to_hex())
        .fetch_optional(&mut *tx)
        .await
        .map_err(db)?;
        if let Some(email) = email {
            let message = format!("{email} signed out");
            record_event(&mut tx, None, EventKind::UserSession, Severity::Info, &message, json!({"user": email}), now)
                .await?;
        }
        tx.commit().await.map_err(db)
    }

    pub(crate) async fn log_failed_login(&self, email: &str, now: i64) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        let message = format!("refused sign-in as {email}");
        record_event(&mut tx, None, EventKind::UserSession, Severity::Warning, &message, json!({"user": email}), now)
            .await?;
        tx.commit().await.map_err(db)
    }
}
