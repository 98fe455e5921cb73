//! Startup and authentication: which database, which role, and its proof.
//!
//! As in Postgres: the database must exist (3D000), the role must exist and be allowed to
//! log in (28000); under `--auth password` the client proves its password with
//! SCRAM-SHA-256 against the role's stored verifier, and a wrong password, an unknown
//! role or a role without a password all end in the same 28P01 after a full exchange
//! (a mock verifier stands in), so that the answer does not reveal which roles exist.

use std::fmt::Debug;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use async_trait::async_trait;
use futures::Sink;
use pgwire::api::auth::driver::AuthOutcome;
use pgwire::api::auth::mechanism::AuthMechanismFactory;
use pgwire::api::auth::sasl::scram::{ScramAuth, ScramSecret};
use pgwire::api::auth::{
    AuthDriver, AuthSource, DefaultServerParameterProvider, LoginInfo, Password, StartupHandler,
    protocol_negotiation, save_startup_parameters_to_metadata,
};
use pgwire::api::{ClientInfo, METADATA_DATABASE, METADATA_USER};
use pgwire::error::{ErrorInfo, PgWireError, PgWireResult};
use pgwire::messages::{PgWireBackendMessage, PgWireFrontendMessage};
use ring::hmac;

use super::handlers::Connection;
use crate::catalog::ScramVerifier;
use crate::common::config::AuthMode;
use crate::engine::Database;

/// The one database a Sabot server holds.
pub const DATABASE_NAME: &str = "sabot";

/// What a server needs to authenticate its clients; shared by all connections.
pub struct Authenticator {
    pub mode: AuthMode,
    driver: AuthDriver<DefaultServerParameterProvider>,
    /// SCRAM without channel binding (plain connections), and with it (TLS connections,
    /// when a certificate is configured).
    scram: ScramAuth,
    scram_tls: Option<ScramAuth>,
}

impl Authenticator {
    pub fn new(
        db: &Arc<Database>,
        connections: Arc<pgwire::api::ConnectionManager>,
        certificate_pem: Option<&[u8]>,
    ) -> crate::common::Result<Self> {
        let mut parameters = DefaultServerParameterProvider::default();
        parameters.server_version = super::SERVER_VERSION.to_string();
        let source = Arc::new(RoleVerifiers::new(db)?);
        let scram = ScramAuth::new(source.clone());
        let scram_tls = match certificate_pem {
            Some(pem) => {
                let mut scram = ScramAuth::new(source);
                scram.configure_certificate(pem).map_err(|e| {
                    crate::common::Error::internal(format!(
                        "cannot use the certificate for SCRAM channel binding: {e}"
                    ))
                })?;
                Some(scram)
            }
            None => None,
        };
        Ok(Authenticator {
            mode: db.config().auth,
            driver: AuthDriver::new(parameters).with_connection_manager(connections),
            scram,
            scram_tls,
        })
    }
}

#[async_trait]
impl StartupHandler for Connection {
    async fn on_startup<C>(&self, client: &mut C, message: PgWireFrontendMessage) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let auth = &self.shared.auth;
        match message {
            PgWireFrontendMessage::Startup(startup) => {
                protocol_negotiation(client, &startup).await?;
                save_startup_parameters_to_metadata(client, &startup);
                let user = self.check_startup(client)?;
                match auth.mode {
                    AuthMode::Trust => self.finish(client, &user, None).await,
                    AuthMode::Password => {
                        let scram = match (&auth.scram_tls, client.is_secure()) {
                            (Some(with_binding), true) => with_binding,
                            _ => &auth.scram,
                        };
                        let outcome = auth.driver.begin_authentication(client, scram.create()).await;
                        self.advanced(client, &user, outcome).await
                    }
                }
            }
            PgWireFrontendMessage::PasswordMessageFamily(message) => {
                let user = client.metadata().get(METADATA_USER).cloned().unwrap_or_default();
                let outcome = auth.driver.advance_authentication(client, message).await;
                self.advanced(client, &user, outcome).await
            }
            _ => Ok(()),
        }
    }
}

impl Connection {
    /// Checks the startup packet's database and role, and takes a connection slot.
    fn check_startup<C: ClientInfo>(&self, client: &C) -> PgWireResult<String> {
        let user = client.metadata().get(METADATA_USER).cloned().ok_or_else(|| {
            fatal("28000", "no PostgreSQL user name specified in startup packet".to_string())
        })?;
        let database = client.metadata().get(METADATA_DATABASE).cloned().unwrap_or_else(|| user.clone());
        if database != DATABASE_NAME {
            return Err(fatal("3D000", format!("database \"{database}\" does not exist")));
        }
        if self.shared.auth.mode == AuthMode::Trust {
            let catalog = self.shared.db.catalog();
            let role = catalog
                .role(&user)
                .ok_or_else(|| fatal("28000", format!("role \"{user}\" does not exist")))?;
            if !role.login {
                return Err(fatal("28000", format!("role \"{user}\" is not permitted to log in")));
            }
        }
        self.admit()?;
        Ok(user)
    }

    /// Completes or continues authentication after a step of the SCRAM exchange.
    async fn advanced<C>(
        &self,
        client: &mut C,
        user: &str,
        outcome: PgWireResult<AuthOutcome>,
    ) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        match outcome {
            Ok(AuthOutcome::InProgress) => Ok(()),
            Ok(AuthOutcome::Authenticated { final_message, .. }) => {
                let can_login = self.shared.db.catalog().role(user).is_some_and(|r| r.login);
                if !can_login {
                    return Err(fatal("28000", format!("role \"{user}\" is not permitted to log in")));
                }
                self.finish(client, user, final_message).await
            }
            Err(PgWireError::InvalidPassword(_)) => {
                tracing::info!(user, peer = %client.socket_addr(), "password authentication failed");
                Err(fatal("28P01", format!("password authentication failed for user \"{user}\"")))
            }
            Err(PgWireError::UserError(info)) => Err(PgWireError::UserError(info)),
            Err(other) => Err(fatal("08P01", format!("authentication failed: {other}"))),
        }
    }

    /// The client is who it says: start its session and tell it so.
    async fn finish<C>(
        &self,
        client: &mut C,
        user: &str,
        final_message: Option<pgwire::messages::startup::Authentication>,
    ) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        self.start_session(user);
        self.limits.authenticated.store(true, Ordering::Release);
        self.shared.auth.driver.complete_authentication(client, final_message).await?;
        tracing::debug!(user, peer = %client.socket_addr(), secure = client.is_secure(), "client authenticated");
        Ok(())
    }
}

/// A FATAL error of the startup phase: the connection closes after it.
pub fn fatal(code: &str, message: String) -> PgWireError {
    PgWireError::UserError(Box::new(ErrorInfo::new("FATAL".into(), code.into(), message)))
}

/// SCRAM verifiers of the roles in the catalog.
struct RoleVerifiers {
    db: std::sync::Weak<Database>,
    /// Keys the mock verifiers of unknown roles, so that they look stable per role name.
    mock_key: hmac::Key,
}

impl Debug for RoleVerifiers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RoleVerifiers")
    }
}

impl RoleVerifiers {
    fn new(db: &Arc<Database>) -> crate::common::Result<Self> {
        let mock_key = hmac::Key::generate(hmac::HMAC_SHA256, &ring::rand::SystemRandom::new())
            .map_err(|_| crate::common::Error::internal("the system's random number generator failed"))?;
        Ok(RoleVerifiers { db: Arc::downgrade(db), mock_key })
    }

    fn verifier(&self, user: &str) -> Option<ScramVerifier> {
        let db = self.db.upgrade()?;
        let catalog = db.catalog();
        catalog.role(user)?.password.as_deref().and_then(ScramVerifier::parse)
    }

    /// A verifier no password matches, with a salt derived from the role name.
    fn mock(&self, user: &str) -> ScramVerifier {
        let salt = hmac::sign(&self.mock_key, user.as_bytes()).as_ref()[..16].to_vec();
        let keys = hmac::sign(&self.mock_key, &salt);
        ScramVerifier {
            iterations: crate::catalog::SCRAM_ITERATIONS,
            salt,
            stored_key: keys.as_ref().to_vec(),
            server_key: keys.as_ref().to_vec(),
        }
    }
}

#[async_trait]
impl AuthSource for RoleVerifiers {
    async fn get_password(&self, login: &LoginInfo) -> PgWireResult<Password> {
        Err(PgWireError::InvalidPassword(login.user().unwrap_or_default().to_string()))
    }

    async fn get_scram_secret(&self, login: &LoginInfo) -> PgWireResult<(ScramSecret, Option<()>)> {
        let user = login.user().unwrap_or_default();
        let verifier = self.verifier(user).unwrap_or_else(|| self.mock(user));
        let secret = ScramSecret::Verifier {
            salt: verifier.salt,
            iterations: verifier.iterations as usize,
            stored_key: verifier.stored_key,
            server_key: verifier.server_key,
        };
        Ok((secret, None))
    }
}
