//! One certificate order over HTTP-01 (RFC 8555 §7.4, §8.3), with instant-acme: the account
//! (loaded from `dir`, or created and saved), the order, the challenges answered through
//! [`Challenges`], the CSR with a fresh key, the chain.

use std::sync::Arc;
use std::time::Duration;

use instant_acme::{
    Account, AccountCredentials, AuthorizationStatus, ChallengeType, Identifier, NewAccount,
    NewOrder, OrderStatus, RetryPolicy,
};
use rouse_config::AcmeConfig;

use super::Error;
use super::client::http_client;
use super::files::{self, Files};
use crate::challenge::Challenges;

/// How long the CA may take to validate the challenges, and then to issue: generous (a
/// production CA validates from several places), yet bounded.
const POLL_TIMEOUT: Duration = Duration::from_secs(120);

/// A new certificate: its PEM chain (leaf first) and PEM key.
pub struct Issued {
    pub chain_pem: String,
    pub key_pem: String,
}

/// Orders a certificate for `config.domains`, answering HTTP-01 from `challenges`.
pub async fn order(
    config: &AcmeConfig,
    files: &Files,
    challenges: &Arc<Challenges>,
) -> Result<Issued, Error> {
    let identifiers: Vec<Identifier> = config
        .domains
        .iter()
        .map(|d| Identifier::Dns(d.clone()))
        .collect();
    let new_order = NewOrder::new(&identifiers);
    let mut order = match account(config, files).await?.new_order(&new_order).await {
        // The CA lost or deactivated the account (a test CA restarted, an account closed by
        // hand): a new one, once, rather than the same refusal every hour for ever.
        Err(instant_acme::Error::Api(problem)) if is_unknown_account(&problem) => {
            tracing::warn!(
                file = %files.account.display(),
                %problem,
                "acme: the CA no longer knows the stored account; creating a new one"
            );
            std::fs::remove_file(&files.account).map_err(|e| Error::io(&files.account, e))?;
            account(config, files).await?.new_order(&new_order).await?
        }
        result => result?,
    };
    // Removed from `challenges` however this ends.
    let mut answers = Answers {
        challenges: Arc::clone(challenges),
        tokens: Vec::new(),
    };
    let mut authorizations = order.authorizations();
    while let Some(authz) = authorizations.next().await {
        let mut authz = authz?;
        match authz.status {
            AuthorizationStatus::Pending => {}
            // Validated by an earlier order of this account, still fresh.
            AuthorizationStatus::Valid => continue,
            other => {
                return Err(Error::Invalid(format!(
                    "authorization for {} is {other:?}",
                    authz.identifier()
                )));
            }
        }
        let name = authz.identifier().to_string();
        let mut challenge = authz.challenge(ChallengeType::Http01).ok_or_else(|| {
            Error::Invalid(format!("the CA offers no HTTP-01 challenge for {name}"))
        })?;
        answers.insert(
            challenge.token.clone(),
            challenge.key_authorization().as_str().to_owned(),
        );
        challenge.set_ready().await?;
    }

    let polling = RetryPolicy::new()
        .initial_delay(Duration::from_millis(250))
        .backoff(1.5)
        .timeout(POLL_TIMEOUT);
    let status = order.poll_ready(&polling).await?;
    if status != OrderStatus::Ready {
        return Err(Error::Invalid(why_invalid(&mut order).await));
    }
    drop(answers);

    let key = rcgen::KeyPair::generate()?;
    let mut params = rcgen::CertificateParams::new(config.domains.clone())?;
    params.distinguished_name = rcgen::DistinguishedName::new();
    let csr = params.serialize_request(&key)?;
    order.finalize_csr(csr.der()).await?;
    let chain_pem = order.poll_certificate(&polling).await?;
    Ok(Issued {
        chain_pem,
        key_pem: key.serialize_pem(),
    })
}

/// The account of `dir` for this CA, or a new one (saved 0600 before it is used).
async fn account(config: &AcmeConfig, files: &Files) -> Result<Account, Error> {
    let http = http_client(config.ca_file.as_deref())?;
    match std::fs::read(&files.account) {
        Ok(bytes) => {
            let credentials: AccountCredentials = serde_json::from_slice(&bytes).map_err(|e| {
                Error::Invalid(format!(
                    "{}: unreadable account: {e}",
                    files.account.display()
                ))
            })?;
            return Ok(Account::builder_with_http(http)
                .from_credentials(credentials)
                .await?);
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(Error::io(&files.account, e)),
    }
    let contact = config.email.as_ref().map(|e| format!("mailto:{e}"));
    let contacts: Vec<&str> = contact.iter().map(String::as_str).collect();
    // Configuring [proxy.acme] is agreeing to the CA's terms, as `certbot --agree-tos`.
    let new = NewAccount {
        contact: &contacts,
        terms_of_service_agreed: true,
        only_return_existing: false,
    };
    let (account, credentials) = Account::builder_with_http(http)
        .create(&new, config.directory.clone(), None)
        .await?;
    let json = serde_json::to_vec_pretty(&credentials)
        .map_err(|e| Error::Invalid(format!("account credentials: {e}")))?;
    files.ensure_dir()?;
    files::write_atomic(&files.account, &json, 0o600)?;
    tracing::info!(account = %account.id(), file = %files.account.display(), "acme: account created");
    Ok(account)
}

fn is_unknown_account(problem: &instant_acme::Problem) -> bool {
    problem
        .r#type
        .as_deref()
        .is_some_and(|t| t.ends_with(":accountDoesNotExist"))
}

/// The CA's reasons, from the challenges that failed.
async fn why_invalid(order: &mut instant_acme::Order) -> String {
    let mut reasons = Vec::new();
    let mut authorizations = order.authorizations();
    while let Some(Ok(mut authz)) = authorizations.next().await {
        let name = authz.identifier().to_string();
        if let Ok(state) = authz.refresh().await {
            for challenge in &state.challenges {
                if let Some(problem) = &challenge.error {
                    reasons.push(format!("{name}: {problem}"));
                }
            }
        }
    }
    if reasons.is_empty() {
        "the order became invalid".to_owned()
    } else {
        format!("the order became invalid: {}", reasons.join("; "))
    }
}

/// HTTP-01 answers published for one order.
struct Answers {
    challenges: Arc<Challenges>,
    tokens: Vec<String>,
}

impl Answers {
    fn insert(&mut self, token: String, key_authorization: String) {
        self.challenges.insert(token.clone(), key_authorization);
        self.tokens.push(token);
    }
}

impl Drop for Answers {
    fn drop(&mut self) {
        for token in &self.tokens {
            self.challenges.remove(token);
        }
    }
}
