//! The Postgres backend.
use super::Result;
/// Run history in Postgres.
#[derive(Debug, Clone)]
pub struct PostgresStorage {}
impl PostgresStorage {
    pub async fn connect(_url: &str) -> Result<Self> {
        unimplemented!()
    }
}
