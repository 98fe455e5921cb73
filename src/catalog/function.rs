//! SQL functions (`CREATE FUNCTION ... LANGUAGE SQL`): a name, typed parameters and a
//! body, kept in the catalog and inlined where they are called (`sql::functions`).

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::{Catalog, FUNCTION_PREFIX};
use crate::common::{Error, Result, SqlState, SqlType};
use crate::state::{META_TABLE, TableId, WriteBatch};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FunctionDesc {
    /// From the relations' id counter: the function's object id is derived from it.
    pub id: TableId,
    pub schema: String,
    pub name: String,
    pub parameters: Vec<FunctionParameter>,
    pub returns: SqlType,
    pub body: FunctionBody,
    /// `STRICT` (`RETURNS NULL ON NULL INPUT`): NULL when any argument is NULL.
    pub strict: bool,
    /// `IMMUTABLE` / `STABLE` / `VOLATILE`, as `pg_proc.provolatile` writes it.
    pub volatility: char,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FunctionParameter {
    pub name: Option<String>,
    pub sql_type: SqlType,
    /// The DEFAULT expression as SQL text.
    pub default: Option<String>,
}

/// A function's body as written.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum FunctionBody {
    /// `AS 'SELECT ...'`: one query, whose one column of its first row is the value.
    Query(String),
    /// `RETURN expression` (SQL-standard body).
    Return(String),
}

impl FunctionDesc {
    pub fn qualified_name(&self) -> String {
        format!("{}.{}", self.schema, self.name)
    }

    /// The parameter list as `pg_get_function_arguments` prints it (`a integer, b text
    /// DEFAULT 'x'`), or without defaults as `pg_get_function_identity_arguments` does.
    pub fn arguments_text(&self, with_defaults: bool) -> String {
        let parameters: Vec<String> = self
            .parameters
            .iter()
            .map(|p| {
                let mut text = match &p.name {
                    Some(name) => format!("{name} {}", type_text(&p.sql_type)),
                    None => type_text(&p.sql_type),
                };
                if let (true, Some(default)) = (with_defaults, &p.default) {
                    text.push_str(&format!(" DEFAULT {default}"));
                }
                text
            })
            .collect();
        parameters.join(", ")
    }

    /// `name(type, ...)`, as Postgres names a function in messages.
    pub fn signature(&self) -> String {
        let types: Vec<String> = self.parameters.iter().map(|p| type_text(&p.sql_type)).collect();
        format!("{}({})", self.name, types.join(", "))
    }

    pub fn source(&self) -> &str {
        match &self.body {
            FunctionBody::Query(text) | FunctionBody::Return(text) => text,
        }
    }
}

/// A parameter's or result's type as Postgres prints it in signatures: without length,
/// precision or scale, which functions do not keep.
pub fn type_text(sql_type: &SqlType) -> String {
    match sql_type {
        SqlType::Array(element) => format!("{}[]", type_text(element)),
        other => other.base_name().to_string(),
    }
}

impl Catalog {
    pub fn function(&self, schema: &str, name: &str) -> Option<&Arc<FunctionDesc>> {
        self.functions.get(&(schema.to_string(), name.to_string()))
    }

    pub fn functions(&self) -> impl Iterator<Item = &Arc<FunctionDesc>> {
        self.functions.values()
    }

    pub fn function_by_id(&self, id: TableId) -> Option<&Arc<FunctionDesc>> {
        self.functions.values().find(|f| f.id == id)
    }

    pub(super) fn load_function(
        &mut self,
        value: &[u8],
    ) -> std::result::Result<(), crate::state::StateError> {
        let desc: FunctionDesc = serde_json::from_slice(value)
            .map_err(|e| crate::state::StateError::Corrupt(format!("function descriptor: {e}")))?;
        self.functions.insert((desc.schema.clone(), desc.name.clone()), Arc::new(desc));
        Ok(())
    }

    /// `CREATE [OR REPLACE] FUNCTION`: a replacement keeps the id of the one it replaces.
    pub(super) fn apply_create_function(&mut self, desc: &Arc<FunctionDesc>) -> Result<()> {
        let key = (desc.schema.clone(), desc.name.clone());
        if self.functions.get(&key).is_some_and(|old| old.id != desc.id) {
            return Err(Error::new(
                SqlState::DuplicateFunction,
                format!("function \"{}\" already exists with same argument types", desc.name),
            ));
        }
        self.next_id = self.next_id.max(desc.id + 1);
        self.functions.insert(key, desc.clone());
        Ok(())
    }

    pub(super) fn apply_drop_function(&mut self, desc: &FunctionDesc) {
        self.functions.remove(&(desc.schema.clone(), desc.name.clone()));
    }

    pub(super) fn persist_function(&self, desc: &FunctionDesc, batch: &mut WriteBatch) -> Result<()> {
        let value = serde_json::to_vec(desc)
            .map_err(|e| Error::internal(format!("cannot encode function descriptor: {e}")))?;
        batch.put(META_TABLE, &function_meta_key(desc.id), value);
        batch.put(META_TABLE, super::NEXT_ID_KEY, self.next_id.to_be_bytes().to_vec());
        Ok(())
    }
}

pub(super) fn function_meta_key(id: TableId) -> Vec<u8> {
    [FUNCTION_PREFIX, &id.to_be_bytes()].concat()
}
