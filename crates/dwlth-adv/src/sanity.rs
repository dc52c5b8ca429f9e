//! Checks that flag gradient masking (Athalye et al. 2018; Carlini et al. 2019): a model whose
//! robust accuracy comes from broken gradients rather than robustness fails at least one.

use burn::tensor::{Int, Tensor};
use serde::Serialize;

use crate::attack::Attack;
use crate::classifier::Classifier;
use crate::error::Result;
use crate::eval::evaluate;

/// One check's verdict.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Check {
    /// What is checked.
    pub name: &'static str,
    /// Whether it passed.
    pub passed: bool,
    /// The numbers behind it.
    pub detail: String,
}

/// The verdicts of [`sanity_checks`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SanityReport {
    /// Every check.
    pub checks: Vec<Check>,
}

impl SanityReport {
    /// Whether every check passed.
    pub fn passed(&self) -> bool {
        self.checks.iter().all(|c| c.passed)
    }
}

/// Runs the sanity suite with `attack` (its ε, α and steps as the base) on one batch:
///
/// 1. RA at ε = 0 equals SA;
/// 2. RA does not rise with ε (0, ε/2, ε, 2ε);
/// 3. more steps (k, 2k, 5k) do not raise RA;
/// 4. RA at ε = 1 (any image reachable) is at most `1/classes + tolerance`;
/// 5. with a `transfer_source`, transfer (black-box) RA is at least white-box RA.
///
/// `tolerance` is the accuracy slack allowed for the randomness of random starts.
pub fn sanity_checks<C: Classifier>(
    model: &C,
    images: Tensor<4>,
    labels: Tensor<1, Int>,
    attack: &Attack,
    classes: usize,
    transfer_source: Option<&C>,
    tolerance: f64,
) -> Result<SanityReport> {
    attack.validate()?;
    let batch = || std::iter::once((images.clone(), labels.clone()));
    let ra = |a: &Attack| -> Result<f64> {
        Ok(evaluate(model, batch(), Some(a), None, classes)?
            .ra
            .unwrap_or(0.0))
    };
    let sa = evaluate(model, batch(), None, None, classes)?.sa;
    let mut checks = Vec::new();

    let zero = Attack {
        eps: 0.0,
        ..attack.clone()
    };
    let ra0 = ra(&zero)?;
    checks.push(Check {
        name: "ra_at_zero_eps_equals_sa",
        passed: (ra0 - sa).abs() <= 1e-9,
        detail: format!("SA {sa:.4}, RA(ε=0) {ra0:.4}"),
    });

    let mut by_eps = Vec::new();
    for f in [0.5, 1.0, 2.0] {
        let a = Attack {
            eps: attack.eps * f,
            alpha: attack.alpha * f,
            ..attack.clone()
        };
        by_eps.push((a.eps, ra(&a)?));
    }
    let mut series = vec![(0.0, ra0)];
    series.extend(by_eps.iter().copied());
    let monotone = series.windows(2).all(|w| w[1].1 <= w[0].1 + tolerance);
    checks.push(Check {
        name: "ra_does_not_rise_with_eps",
        passed: monotone,
        detail: format!("{series:?}"),
    });

    let base = by_eps[1].1;
    let mut by_steps = vec![(attack.steps, base)];
    for m in [2, 5] {
        let a = Attack {
            steps: attack.steps * m,
            ..attack.clone()
        };
        by_steps.push((a.steps, ra(&a)?));
    }
    let steps_ok = by_steps.windows(2).all(|w| w[1].1 <= w[0].1 + tolerance);
    checks.push(Check {
        name: "more_steps_do_not_raise_ra",
        passed: steps_ok,
        detail: format!("{by_steps:?}"),
    });

    let huge = Attack {
        eps: 1.0,
        alpha: 0.1,
        steps: attack.steps.max(10),
        ..attack.clone()
    };
    let ra_huge = ra(&huge)?;
    checks.push(Check {
        name: "ra_vanishes_at_huge_eps",
        passed: ra_huge <= 1.0 / classes as f64 + tolerance,
        detail: format!("RA(ε=1) {ra_huge:.4}"),
    });

    if let Some(source) = transfer_source {
        let transfer = evaluate(model, batch(), Some(attack), Some(source), classes)?
            .ra
            .unwrap_or(0.0);
        checks.push(Check {
            name: "transfer_ra_at_least_white_box_ra",
            passed: transfer + tolerance >= base,
            detail: format!("transfer RA {transfer:.4}, white-box RA {base:.4}"),
        });
    }
    Ok(SanityReport { checks })
}
