//! CREATE / ALTER / DROP ROLE (and USER): who may log in, with which password.
//!
//! Only superusers manage roles; any role may change its own password. Privileges on
//! objects are not checked yet: every role that can log in may use every object.

use std::sync::Arc;

use datafusion::sql::sqlparser::ast::{self, AlterRoleOperation, CreateRole, Expr, ObjectName, RoleOption};

use super::Database;
use super::session::Outcome;
use crate::catalog::{CatalogChange, RoleDesc, SUPERUSER, password_verifier, undefined_role};
use crate::common::config::Secret;
use crate::common::{Error, Result, SqlState};
use crate::sql::ddl::normalize_ident;

impl Database {
    pub(super) async fn create_role(&self, create: &CreateRole, user: &str) -> Result<Outcome> {
        self.require_superuser(user, "create roles")?;
        check_supported_create(create)?;
        let _ddl = self.ddl_lock.lock().await;
        let catalog = self.catalog();
        let mut changes = Vec::new();
        let mut notices = Vec::new();
        for name in &create.names {
            let name = role_name(name)?;
            if catalog.role(&name).is_some() {
                if create.if_not_exists {
                    notices.push(format!("role \"{name}\" already exists, skipping"));
                    continue;
                }
                return Err(Error::new(SqlState::DuplicateObject, format!("role \"{name}\" already exists")));
            }
            let password = match &create.password {
                Some(password) => password_option(password)?,
                None => None,
            };
            let role = RoleDesc {
                name,
                superuser: create.superuser.unwrap_or(false),
                login: create.login.unwrap_or(false),
                password,
            };
            changes.push(CatalogChange::CreateRole(Arc::new(role)));
        }
        if !changes.is_empty() {
            self.change_catalog(changes).await?;
        }
        Ok(Outcome::command("CREATE ROLE").with_notices(notices))
    }

    pub(super) async fn alter_role(
        &self,
        name: &ast::Ident,
        operation: &AlterRoleOperation,
        user: &str,
    ) -> Result<Outcome> {
        let name = normalize_ident(name);
        let AlterRoleOperation::WithOptions { options } = operation else {
            return Err(Error::unsupported(format!("ALTER ROLE {operation}")));
        };
        let only_own_password = name == user && options.iter().all(|o| matches!(o, RoleOption::Password(_)));
        if !only_own_password {
            self.require_superuser(user, "alter roles other than their own password")?;
        }
        let _ddl = self.ddl_lock.lock().await;
        let catalog = self.catalog();
        let mut role = RoleDesc::clone(catalog.role(&name).ok_or_else(|| undefined_role(&name))?);
        for option in options {
            match option {
                RoleOption::Login(login) => role.login = *login,
                RoleOption::SuperUser(superuser) => role.superuser = *superuser,
                RoleOption::Password(password) => role.password = password_option(password)?,
                other => return Err(Error::unsupported(format!("role option {other}"))),
            }
        }
        if role.name == SUPERUSER && !(role.superuser && role.login) {
            return Err(Error::new(
                SqlState::InsufficientPrivilege,
                format!("role {SUPERUSER} must stay a superuser that can log in"),
            ));
        }
        self.change_catalog(vec![CatalogChange::AlterRole(Arc::new(role))]).await?;
        Ok(Outcome::command("ALTER ROLE"))
    }

    pub(super) async fn drop_roles(
        &self,
        names: &[ObjectName],
        if_exists: bool,
        user: &str,
    ) -> Result<Outcome> {
        self.require_superuser(user, "drop roles")?;
        let _ddl = self.ddl_lock.lock().await;
        let catalog = self.catalog();
        let mut changes = Vec::new();
        let mut notices = Vec::new();
        for name in names {
            let name = role_name(name)?;
            match catalog.role(&name) {
                Some(_) if name == user => {
                    return Err(Error::new(SqlState::ObjectInUse, "current user cannot be dropped"));
                }
                Some(role) => changes.push(CatalogChange::DropRole(role.clone())),
                None if if_exists => notices.push(format!("role \"{name}\" does not exist, skipping")),
                None => return Err(undefined_role(&name)),
            }
        }
        if !changes.is_empty() {
            self.change_catalog(changes).await?;
        }
        Ok(Outcome::command("DROP ROLE").with_notices(notices))
    }

    /// Sets the superuser's password at start-up, unless it already is that password.
    pub(super) async fn set_superuser_password(&self, password: &Secret) -> Result<()> {
        let _ddl = self.ddl_lock.lock().await;
        let catalog = self.catalog();
        let current = catalog.role(SUPERUSER).ok_or_else(|| undefined_role(SUPERUSER))?;
        if current.password_matches(&password.0) {
            return Ok(());
        }
        let role = RoleDesc { password: Some(password_verifier(&password.0)?), ..RoleDesc::clone(current) };
        self.change_catalog(vec![CatalogChange::AlterRole(Arc::new(role))]).await?;
        tracing::info!(role = SUPERUSER, "superuser password set");
        Ok(())
    }

    fn require_superuser(&self, user: &str, action: &str) -> Result<()> {
        match self.catalog().role(user) {
            Some(role) if role.superuser => Ok(()),
            _ => Err(Error::new(
                SqlState::InsufficientPrivilege,
                format!("permission denied: only superusers may {action}"),
            )),
        }
    }
}

fn role_name(name: &ObjectName) -> Result<String> {
    match name.0.as_slice() {
        [part] => part
            .as_ident()
            .map(normalize_ident)
            .ok_or_else(|| Error::new(SqlState::SyntaxError, format!("invalid role name {name}"))),
        _ => Err(Error::new(SqlState::SyntaxError, format!("role name {name} cannot be qualified"))),
    }
}

/// The verifier `PASSWORD '...'` stores (`PASSWORD NULL` removes it).
fn password_option(password: &ast::Password) -> Result<Option<String>> {
    match password {
        ast::Password::NullPassword => Ok(None),
        ast::Password::Password(Expr::Value(value)) => match &value.value {
            ast::Value::SingleQuotedString(text) | ast::Value::EscapedStringLiteral(text) => {
                password_verifier(text).map(Some)
            }
            ast::Value::Null => Ok(None),
            other => {
                Err(Error::new(SqlState::SyntaxError, format!("a password must be a string, not {other}")))
            }
        },
        ast::Password::Password(other) => Err(Error::new(
            SqlState::SyntaxError,
            format!("a password must be a string literal, not {other}"),
        )),
    }
}

/// Role attributes Sabot does not implement are refused rather than ignored.
fn check_supported_create(create: &CreateRole) -> Result<()> {
    let unsupported = [
        ("BYPASSRLS", create.bypassrls.is_some()),
        ("CREATEDB", create.create_db.is_some()),
        ("CREATEROLE", create.create_role.is_some()),
        ("REPLICATION", create.replication.is_some()),
        ("CONNECTION LIMIT", create.connection_limit.is_some()),
        ("VALID UNTIL", create.valid_until.is_some()),
        ("IN ROLE", !create.in_role.is_empty()),
        ("IN GROUP", !create.in_group.is_empty()),
        ("ROLE", !create.role.is_empty()),
        ("USER", !create.user.is_empty()),
        ("ADMIN", !create.admin.is_empty()),
        ("AUTHORIZATION", create.authorization_owner.is_some()),
    ];
    match unsupported.iter().find(|(_, present)| *present) {
        Some((option, _)) => Err(Error::unsupported(format!("role option {option}"))
            .with_hint("roles have LOGIN, SUPERUSER and PASSWORD; privileges are not checked yet")),
        None => Ok(()),
    }
}
