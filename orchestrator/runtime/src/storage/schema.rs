//! Throwaway Postgres schemas, for benchmarks and tests that need an isolated run history in
//! a shared database.

use sqlx::Connection;

use super::{Result, StorageError, redact_url};

/// `url` with its connections' `search_path` set to `schema`.
pub fn url_with_schema(url: &str, schema: &str) -> String {
    let sep = if url.contains('?') { '&' } else { '?' };
    format!("{url}{sep}options=-c%20search_path%3D{schema}")
}

/// Creates `schema` (a plain identifier) in the database at `url`.
pub async fn create_schema(url: &str, schema: &str) -> Result<()> {
    check_identifier(schema)?;
    let mut conn = connect(url).await?;
    sqlx::query(&format!("CREATE SCHEMA IF NOT EXISTS \"{schema}\""))
        .execute(&mut conn)
        .await?;
    Ok(())
}

/// Drops `schema` and everything in it.
pub async fn drop_schema(url: &str, schema: &str) -> Result<()> {
    check_identifier(schema)?;
    let mut conn = connect(url).await?;
    sqlx::query(&format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE"))
        .execute(&mut conn)
        .await?;
    Ok(())
}

async fn connect(url: &str) -> Result<sqlx::PgConnection> {
    sqlx::PgConnection::connect(url)
        .await
        .map_err(|source| StorageError::Connect {
            url: redact_url(url),
            source,
        })
}

fn check_identifier(schema: &str) -> Result<()> {
    if schema.is_empty()
        || !schema
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
    {
        return Err(StorageError::Corrupt(format!(
            "`{schema}` is not a plain schema name (lowercase letters, digits, `_`)"
        )));
    }
    Ok(())
}
