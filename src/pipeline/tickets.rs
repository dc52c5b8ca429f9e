//! How tickets are found: the methods an experiment compares side by side, each with the label
//! its runs, curves and report rows carry.

use std::path::PathBuf;

use dwlth_adv::TrainConfig;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::{DwlthError, Result};

/// How tickets are found on the source task.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
// Internally tagged, so the strict reader cannot see inside: a method's own unknown keys are
// refused here, those of IMP's `retrain` table by `check_retrain_keys`.
#[serde(tag = "method", rename_all = "lowercase", deny_unknown_fields)]
// A configuration value, built once per experiment: its size does not matter.
#[allow(clippy::large_enum_variant)]
pub enum TicketSpec {
    /// One-shot global magnitude pruning of θ_p to each sparsity.
    Omp {
        /// Sparsity levels (0 is always added: the dense model).
        sparsities: Vec<f64>,
    },
    /// Random pruning to each sparsity (a baseline).
    Random {
        /// Sparsity levels.
        sparsities: Vec<f64>,
        /// Seed.
        seed: u64,
    },
    /// Structured pruning of θ_p (paper B): whole rows, k×k kernels or output channels with
    /// the smallest ℓ1 norm, `sparsity` being the fraction of structures pruned.
    Structured {
        /// Sparsity levels (fractions of structures).
        sparsities: Vec<f64>,
        /// `row`, `kernel` or `channel`.
        granularity: dwlth_prune::Granularity,
        /// Per layer (as `torch.nn.utils.prune.ln_structured`) or global.
        scope: dwlth_prune::Scope,
    },
    /// Learnable masks (LMP, paper B) on the source task, weights frozen at θ_p: one mask per
    /// sparsity, scores trained for `epochs` with step `lr`.
    Lmp {
        /// Sparsity levels.
        sparsities: Vec<f64>,
        /// Step of the score updates.
        lr: f64,
        /// Passes over the source training set.
        epochs: usize,
    },
    /// Tickets found elsewhere, per pre-training name: mask files (`dwlth prune` output,
    /// `torch.nn.utils.prune` state dicts, the Double-Win-LTH release's ImageNet IMP tickets).
    /// Each file's sparsity over the convolutions names its level.
    Files {
        /// Pre-training name → mask files.
        files: std::collections::BTreeMap<String, Vec<PathBuf>>,
    },
    /// IMP with rewinding on the source task: `rounds` rounds of 20 % (or the `sparsities`
    /// schedule), re-training with `retrain` after each
    /// (the reference prunes before the first re-training); every round's mask is a ticket.
    /// With `downstream`, IMP runs on the target task instead (paper B's DS-IMP): θ_p with a
    /// target head, re-trained on the target training set, rewound to θ_p each round.
    Imp {
        /// Rounds (sparsity 1 − 0.8^k); may be left out with `sparsities`.
        #[serde(default)]
        rounds: usize,
        /// A schedule instead of 20 % per round: round k prunes to the k-th sparsity (see
        /// `dwlth_prune::ImpConfig::sparsities`), e.g. the one-shot tickets' levels.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        sparsities: Vec<f64>,
        /// Re-training of each round (regime ST for IMP, AT for A-IMP).
        retrain: TrainConfig,
        /// On the target task (DS-IMP) rather than the source task.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        downstream: bool,
    },
}

impl TicketSpec {
    /// The method's label in run results and report rows: `omp`, `random`, `structured`,
    /// `lmp`, `files`, `imp`, or `ds-imp` (IMP on the target task).
    pub fn label(&self) -> &'static str {
        match self {
            TicketSpec::Omp { .. } => "omp",
            TicketSpec::Random { .. } => "random",
            TicketSpec::Structured { .. } => "structured",
            TicketSpec::Lmp { .. } => "lmp",
            TicketSpec::Files { .. } => "files",
            TicketSpec::Imp {
                downstream: true, ..
            } => "ds-imp",
            TicketSpec::Imp { .. } => "imp",
        }
    }

    /// IMP's rounds: `rounds`, or the length of its schedule.
    pub fn imp_rounds(rounds: usize, sparsities: &[f64]) -> usize {
        if rounds == 0 {
            sparsities.len()
        } else {
            rounds
        }
    }

    /// The sparsity levels the method is asked for (empty where the method decides: IMP at
    /// 20 % per round, mask files).
    pub fn sparsities(&self) -> &[f64] {
        match self {
            TicketSpec::Omp { sparsities }
            | TicketSpec::Random { sparsities, .. }
            | TicketSpec::Structured { sparsities, .. }
            | TicketSpec::Lmp { sparsities, .. }
            | TicketSpec::Imp { sparsities, .. } => sparsities,
            TicketSpec::Files { .. } => &[],
        }
    }

    /// Whether finding these tickets reads the source task.
    pub fn needs_source(&self) -> bool {
        matches!(
            self,
            TicketSpec::Imp {
                downstream: false,
                ..
            } | TicketSpec::Lmp { .. }
        )
    }

    /// Checks the method's own settings; `pretrain` are the experiment's pre-training names
    /// (mask files are needed for each).
    pub fn validate(&self, pretrain: &[&str]) -> Result<()> {
        let bad = |what: String| {
            Err(DwlthError::InvalidArgument(format!(
                "invalid experiment: {what}"
            )))
        };
        match self {
            TicketSpec::Lmp { lr, epochs, .. } if !(lr.is_finite() && *lr > 0.0 && *epochs > 0) => {
                return bad("LMP needs a finite positive lr and epochs".into());
            }
            TicketSpec::Imp {
                rounds,
                sparsities,
                retrain,
                ..
            } => {
                retrain.validate()?;
                if *rounds == 0 && sparsities.is_empty() {
                    return bad("IMP needs at least one round (or a `sparsities` schedule)".into());
                }
                if !sparsities.is_empty() && *rounds != 0 && *rounds != sparsities.len() {
                    return bad(format!(
                        "IMP has {rounds} rounds but {} `sparsities`; give one per round or \
                         leave `rounds` out",
                        sparsities.len()
                    ));
                }
                if let Some(s) = sparsities.iter().find(|s| **s <= 0.0) {
                    return bad(format!(
                        "IMP's `sparsities` holds {s}; every round prunes, so each level is above 0"
                    ));
                }
                if sparsities.windows(2).any(|w| w[1] <= w[0]) {
                    return bad(format!(
                        "IMP's `sparsities` {sparsities:?} must increase round by round"
                    ));
                }
            }
            TicketSpec::Files { files } => {
                if let Some(p) = pretrain
                    .iter()
                    .find(|p| files.get(**p).is_none_or(|f| f.is_empty()))
                {
                    return bad(format!(
                        "`tickets.files` has no mask file for pre-training `{p}`"
                    ));
                }
            }
            _ => {}
        }
        if let Some(s) = self.sparsities().iter().find(|s| !(0.0..1.0).contains(*s)) {
            return bad(format!(
                "`tickets.sparsities` holds {s}; sparsities must be in [0, 1)"
            ));
        }
        Ok(())
    }
}

/// Checks a list of methods: at least one, each valid, no label twice (a label names the
/// runs of one method).
pub(crate) fn validate_methods(methods: &[TicketSpec], pretrain: &[&str]) -> Result<()> {
    if methods.is_empty() {
        return Err(DwlthError::InvalidArgument(
            "invalid experiment: `tickets` names no method".into(),
        ));
    }
    for (i, m) in methods.iter().enumerate() {
        m.validate(pretrain)?;
        if methods[..i].iter().any(|o| o.label() == m.label()) {
            return Err(DwlthError::InvalidArgument(format!(
                "invalid experiment: `tickets` has method `{}` twice; each method is compared \
                 once (put its sparsities in one table)",
                m.label()
            )));
        }
    }
    Ok(())
}

/// `tickets` in a file: one table (`[tickets]`, one method) or an array of tables
/// (`[[tickets]]`, methods side by side). One method is written as a table, as before.
pub(crate) mod one_or_many {
    use super::*;

    pub fn serialize<S: Serializer>(
        methods: &[TicketSpec],
        s: S,
    ) -> std::result::Result<S::Ok, S::Error> {
        match methods {
            [one] => one.serialize(s),
            many => many.serialize(s),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> std::result::Result<Vec<TicketSpec>, D::Error> {
        struct Visit;
        impl<'de> serde::de::Visitor<'de> for Visit {
            type Value = Vec<TicketSpec>;

            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a table with a `method`, or an array of such tables")
            }

            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                map: A,
            ) -> std::result::Result<Self::Value, A::Error> {
                let one =
                    TicketSpec::deserialize(serde::de::value::MapAccessDeserializer::new(map))?;
                Ok(vec![one])
            }

            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                seq: A,
            ) -> std::result::Result<Self::Value, A::Error> {
                Vec::<TicketSpec>::deserialize(serde::de::value::SeqAccessDeserializer::new(seq))
            }
        }
        d.deserialize_any(Visit)
    }
}

/// Refuses an unknown key in the `retrain` table of a `[tickets]` / `[[tickets]]` method of
/// `text` (a method is read through serde's internally tagged enums, which hand the strict
/// reader no unknown keys from inside), naming it and the nearest known one; `example` holds
/// the keys a training table may use. Other errors in the table are left to the typed parse
/// of the whole file, which reports them with their line.
pub(crate) fn check_retrain_keys(
    text: &str,
    example: &TrainConfig,
) -> std::result::Result<(), String> {
    let Ok(root) = text.parse::<toml::Table>() else {
        return Ok(()); // the typed parse reports syntax errors with their position
    };
    let methods: Vec<(String, &toml::Table)> = match root.get("tickets") {
        Some(toml::Value::Table(t)) => vec![("tickets".to_string(), t)],
        Some(toml::Value::Array(a)) => a
            .iter()
            .enumerate()
            .filter_map(|(i, v)| Some((format!("tickets.{i}"), v.as_table()?)))
            .collect(),
        _ => Vec::new(),
    };
    for (path, method) in methods {
        let Some(toml::Value::Table(retrain)) = method.get("retrain") else {
            continue;
        };
        let retrain = toml::to_string(retrain).map_err(|e| e.to_string())?;
        let parsed = crate::toml_keys::from_str_strict::<TrainConfig>(
            &retrain,
            std::slice::from_ref(example),
        );
        if let Err(e) = parsed {
            if let Some(rest) = e.strip_prefix("unknown key `") {
                return Err(format!("unknown key `{path}.retrain.{rest}"));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use crate::pipeline::{ExperimentConfig, TicketSpec};

    fn with_two_methods() -> ExperimentConfig {
        let mut config = ExperimentConfig::smoke(PathBuf::new(), PathBuf::new());
        let retrain = config.pretrain_train.clone();
        config.tickets.push(TicketSpec::Imp {
            rounds: 0,
            sparsities: vec![0.5, 0.9],
            retrain,
            downstream: false,
        });
        config
    }

    #[test]
    fn one_method_is_a_table_several_an_array_of_tables() {
        let one = ExperimentConfig::smoke(PathBuf::new(), PathBuf::new());
        let text = one.to_toml();
        assert!(text.contains("[tickets]") && !text.contains("[[tickets]]"));
        assert_eq!(ExperimentConfig::from_toml(&text).unwrap(), one);
        let two = with_two_methods();
        let text = two.to_toml();
        assert!(text.contains("[[tickets]]"), "{text}");
        assert_eq!(ExperimentConfig::from_toml(&text).unwrap(), two);
        // A misspelt key inside one of the tables is named, with the nearest known key.
        let bad = text.replacen("sparsities = [", "sparsitys = [", 1);
        let message = ExperimentConfig::from_toml(&bad).unwrap_err().to_string();
        assert!(
            message.contains("unknown field `sparsitys`") && message.contains("`sparsities`"),
            "{message}"
        );
        // So is one inside IMP's `retrain` table, which the strict reader cannot see into.
        let retrain = text.find("[tickets.retrain]").expect("IMP's retrain table");
        let epochs = retrain + text[retrain..].find("\nepochs = ").expect("its epochs");
        let bad = format!("{}\nepochz = {}", &text[..epochs], &text[epochs + 10..]);
        let message = ExperimentConfig::from_toml(&bad).unwrap_err().to_string();
        assert!(
            message.contains("unknown key `tickets.1.retrain.epochz`; did you mean `epochs`?"),
            "{message}"
        );
    }

    #[test]
    fn bad_method_lists_and_schedules_are_refused_by_name() {
        let mut config = with_two_methods();
        config.tickets.clear();
        assert!(config
            .validate()
            .unwrap_err()
            .to_string()
            .contains("no method"));
        for (rounds, sparsities, needle) in [
            (3, vec![0.5, 0.9], "3 rounds but 2"),
            (0, vec![0.9, 0.5], "must increase"),
            (0, vec![], "at least one round"),
            (0, vec![0.5, 1.0], "sparsities must be in [0, 1)"),
            (0, vec![0.0, 0.5], "each level is above 0"),
        ] {
            let mut config = with_two_methods();
            if let TicketSpec::Imp {
                rounds: r,
                sparsities: s,
                ..
            } = &mut config.tickets[1]
            {
                (*r, *s) = (rounds, sparsities);
            }
            let message = config.validate().unwrap_err().to_string();
            assert!(message.contains(needle), "{needle}: {message}");
        }
        assert_eq!(TicketSpec::imp_rounds(0, &[0.5, 0.9]), 2);
        assert_eq!(TicketSpec::imp_rounds(4, &[]), 4);
    }
}
