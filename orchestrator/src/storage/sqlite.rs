//! The SQLite backend.
use super::Result;
/// Run history in SQLite.
#[derive(Debug, Clone)]
pub struct SqliteStorage {}
impl SqliteStorage {
    pub async fn connect(_url: &str) -> Result<Self> {
        unimplemented!()
    }
}
