//! A small safe layer over DuckDB's C API (through `libduckdb-sys`, linked against the prebuilt
//! `libduckdb.so`): open a database file, connect, run SQL, read a result as JSON values. The
//! warehouse needs nothing more, and this keeps the `duckdb` crate's second Arrow version out of
//! the build.
#![allow(unsafe_code)]

use std::ffi::{CStr, CString, c_char};
use std::marker::PhantomData;
use std::path::Path;
use std::ptr;

use libduckdb_sys as sys;
use serde_json::Value;

use crate::QueryResult;

/// An open database file. DuckDB lets one process hold a file open for writing: open it for
/// the time of one piece of work, so that dbt (another process) can open it between.
pub struct Database {
    db: sys::duckdb_database,
}

// SAFETY: a duckdb_database may be used from any thread (DuckDB synchronises internally); it
// is only closed in Drop, when no connection borrows it.
unsafe impl Send for Database {}

impl Database {
    /// Opens (creating if missing) the database file at `path`.
    pub fn open(path: &Path) -> Result<Database, String> {
        let text = path
            .to_str()
            .ok_or_else(|| format!("the path {} is not UTF-8", path.display()))?;
        let c_path = CString::new(text).map_err(|_| "the path holds a NUL byte".to_owned())?;
        let mut db: sys::duckdb_database = ptr::null_mut();
        let mut error: *mut c_char = ptr::null_mut();
        // SAFETY: c_path outlives the call; db and error are out-parameters; a null config
        // means defaults.
        let state =
            unsafe { sys::duckdb_open_ext(c_path.as_ptr(), &mut db, ptr::null_mut(), &mut error) };
        if state != sys::duckdb_state_DuckDBSuccess {
            let message = if error.is_null() {
                "unknown error".to_owned()
            } else {
                // SAFETY: DuckDB set error to a NUL-terminated string that we must free.
                let m = unsafe { CStr::from_ptr(error) }
                    .to_string_lossy()
                    .into_owned();
                unsafe { sys::duckdb_free(error.cast()) };
                m
            };
            if !db.is_null() {
                // SAFETY: a half-opened database is closed once.
                unsafe { sys::duckdb_close(&mut db) };
            }
            return Err(message);
        }
        Ok(Database { db })
    }

    pub fn connect(&self) -> Result<Connection<'_>, String> {
        let mut con: sys::duckdb_connection = ptr::null_mut();
        // SAFETY: self.db is open; con is an out-parameter.
        let state = unsafe { sys::duckdb_connect(self.db, &mut con) };
        if state != sys::duckdb_state_DuckDBSuccess {
            return Err("cannot connect to the database".to_owned());
        }
        Ok(Connection {
            con,
            _db: PhantomData,
        })
    }
}

impl Drop for Database {
    fn drop(&mut self) {
        // SAFETY: opened in `open`, closed once; connections borrow self so they are gone.
        unsafe { sys::duckdb_close(&mut self.db) };
    }
}

/// A connection to an open [`Database`].
pub struct Connection<'db> {
    con: sys::duckdb_connection,
    _db: PhantomData<&'db Database>,
}

// SAFETY: a connection may move between threads; it is not shared (no Sync).
unsafe impl Send for Connection<'_> {}

impl Connection<'_> {
    /// Runs `sql` (one or several statements), returning the rows the last one changed.
    pub fn execute(&self, sql: &str) -> Result<u64, String> {
        let mut result = self.run(sql)?;
        // SAFETY: result holds a successful query's result.
        Ok(unsafe { sys::duckdb_rows_changed(&mut result.0) })
    }

    /// Runs `sql`, returning its columns and rows: integers and floats as JSON numbers,
    /// booleans as booleans, NULL as null, everything else as DuckDB prints it.
    pub fn query(&self, sql: &str) -> Result<QueryResult, String> {
        let mut result = self.run(sql)?;
        let res = &mut result.0 as *mut sys::duckdb_result;
        // SAFETY: res is a successful query's result, read within its column and row counts;
        // strings DuckDB allocates for us are freed with duckdb_free.
        unsafe {
            let columns = sys::duckdb_column_count(res);
            let rows = sys::duckdb_row_count(res);
            let mut names = Vec::with_capacity(columns as usize);
            let mut types = Vec::with_capacity(columns as usize);
            for c in 0..columns {
                let name = sys::duckdb_column_name(res, c);
                names.push(if name.is_null() {
                    format!("column{c}")
                } else {
                    CStr::from_ptr(name).to_string_lossy().into_owned()
                });
                types.push(sys::duckdb_column_type(res, c));
            }
            let mut out = Vec::with_capacity(rows as usize);
            for r in 0..rows {
                let mut row = Vec::with_capacity(columns as usize);
                for (c, &ty) in types.iter().enumerate() {
                    let c = c as sys::idx_t;
                    if sys::duckdb_value_is_null(res, c, r) {
                        row.push(Value::Null);
                        continue;
                    }
                    row.push(match ty {
                        sys::DUCKDB_TYPE_DUCKDB_TYPE_BOOLEAN => {
                            Value::Bool(sys::duckdb_value_boolean(res, c, r))
                        }
                        sys::DUCKDB_TYPE_DUCKDB_TYPE_TINYINT
                        | sys::DUCKDB_TYPE_DUCKDB_TYPE_SMALLINT
                        | sys::DUCKDB_TYPE_DUCKDB_TYPE_INTEGER
                        | sys::DUCKDB_TYPE_DUCKDB_TYPE_BIGINT
                        | sys::DUCKDB_TYPE_DUCKDB_TYPE_UTINYINT
                        | sys::DUCKDB_TYPE_DUCKDB_TYPE_USMALLINT
                        | sys::DUCKDB_TYPE_DUCKDB_TYPE_UINTEGER => {
                            Value::from(sys::duckdb_value_int64(res, c, r))
                        }
                        sys::DUCKDB_TYPE_DUCKDB_TYPE_FLOAT
                        | sys::DUCKDB_TYPE_DUCKDB_TYPE_DOUBLE => {
                            serde_json::Number::from_f64(sys::duckdb_value_double(res, c, r))
                                .map_or(Value::Null, Value::Number)
                        }
                        _ => {
                            let text = sys::duckdb_value_varchar(res, c, r);
                            if text.is_null() {
                                Value::Null
                            } else {
                                let s = CStr::from_ptr(text).to_string_lossy().into_owned();
                                sys::duckdb_free(text.cast());
                                // HUGEINT, UBIGINT and DECIMAL print as numbers: keep them so.
                                match ty {
                                    sys::DUCKDB_TYPE_DUCKDB_TYPE_HUGEINT
                                    | sys::DUCKDB_TYPE_DUCKDB_TYPE_UBIGINT
                                    | sys::DUCKDB_TYPE_DUCKDB_TYPE_DECIMAL => s
                                        .parse::<serde_json::Number>()
                                        .map_or(Value::String(s), Value::Number),
                                    _ => Value::String(s),
                                }
                            }
                        }
                    });
                }
                out.push(row);
            }
            Ok(QueryResult {
                columns: names,
                rows: out,
            })
        }
    }

    fn run(&self, sql: &str) -> Result<OwnedResult, String> {
        let c_sql = CString::new(sql).map_err(|_| "the SQL holds a NUL byte".to_owned())?;
        // SAFETY: duckdb_result is a plain C struct; zeroed is its documented initial state.
        let mut result = OwnedResult(unsafe { std::mem::zeroed() });
        // SAFETY: self.con is connected; c_sql outlives the call; result is destroyed by
        // OwnedResult's Drop whether or not the query succeeded.
        let state = unsafe { sys::duckdb_query(self.con, c_sql.as_ptr(), &mut result.0) };
        if state != sys::duckdb_state_DuckDBSuccess {
            // SAFETY: the error string lives as long as the result.
            let error = unsafe { sys::duckdb_result_error(&mut result.0) };
            let message = if error.is_null() {
                "unknown error".to_owned()
            } else {
                unsafe { CStr::from_ptr(error) }
                    .to_string_lossy()
                    .into_owned()
            };
            return Err(message);
        }
        Ok(result)
    }
}

impl Drop for Connection<'_> {
    fn drop(&mut self) {
        // SAFETY: connected in `connect`, disconnected once.
        unsafe { sys::duckdb_disconnect(&mut self.con) };
    }
}

struct OwnedResult(sys::duckdb_result);

impl Drop for OwnedResult {
    fn drop(&mut self) {
        // SAFETY: destroying a zeroed or filled result is allowed, once.
        unsafe { sys::duckdb_destroy_result(&mut self.0) };
    }
}

/// `text` as a SQL string literal.
pub fn quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

/// `name` as a SQL identifier.
pub fn ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}
