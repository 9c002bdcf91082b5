//! What the fake Hub keeps about a Space outside its git repo: the SDK it was created with, its
//! Secrets and Variables (facts §6 has no row for them; shapes from huggingface_hub 2.4.0
//! `add_space_secret`/`get_space_secrets`/`add_space_variable`/`get_space_variables`), and which
//! tokens belong to free accounts (the Hub answers 402 when they create a Docker Space).
//! The HTTP handlers are in `routes/spaces.rs`; tests read the state through `FakeHub` methods
//! here. Kept apart from the repo code so other endpoint families can grow beside it.

use std::collections::{BTreeMap, HashSet};

use super::FakeHub;

/// A Secret or Variable as stored: value, description, last update (ISO 8601).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Setting {
    pub value: String,
    pub description: Option<String>,
    pub updated_at: String,
}

/// One Space's settings.
#[derive(Clone, Debug, Default)]
pub struct SpaceSettings {
    pub sdk: Option<String>,
    pub secrets: BTreeMap<String, Setting>,
    pub variables: BTreeMap<String, Setting>,
}

#[derive(Default)]
pub(super) struct SpacesState {
    /// Space id -> settings.
    pub(super) spaces: BTreeMap<String, SpaceSettings>,
    /// Tokens of accounts without a paid plan.
    pub(super) free_tokens: HashSet<String>,
}

impl FakeHub {
    /// The settings of a Space (None if it has none: never created through the API).
    pub fn space_settings(&self, id: &str) -> Option<SpaceSettings> {
        self.inner.state().spaces.spaces.get(id).cloned()
    }

    /// The value of a Space Secret, as the Space would see it in its environment.
    pub fn space_secret(&self, id: &str, key: &str) -> Option<String> {
        let settings = self.space_settings(id)?;
        settings.secrets.get(key).map(|s| s.value.clone())
    }

    /// The value of a Space Variable.
    pub fn space_variable(&self, id: &str, key: &str) -> Option<String> {
        let settings = self.space_settings(id)?;
        settings.variables.get(key).map(|s| s.value.clone())
    }

    /// Creating a Docker Space with this (valid) token gets 402, as for a free account.
    pub fn mark_free_account(&self, token: &str) {
        self.inner
            .state()
            .spaces
            .free_tokens
            .insert(token.to_string());
    }
}
