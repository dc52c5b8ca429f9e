//! Standard and robust accuracy (SA / RA), per class, and transfer attacks.

use burn::tensor::{Int, Tensor};
use serde::Serialize;

use crate::attack::Attack;
use crate::checks::{check_batch_shape, check_labels};
use crate::classifier::Classifier;
use crate::error::Result;
use crate::train::IntoBatch;

/// Predicted classes of `images` under `model` (evaluated as given: pass an eval-mode view).
pub fn predict<C: Classifier>(model: &C, images: Tensor<4>) -> Tensor<1, Int> {
    let logits = model.logits(images.autodiff()).without_autodiff();
    let [n, _] = logits.dims();
    logits.argmax(1).reshape([n])
}

fn host_ints(t: Tensor<1, Int>) -> Vec<i64> {
    t.into_data().try_to_vec_as::<i64>().unwrap_or_default()
}

/// Accuracy counts, overall and per class.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Tally {
    /// Correct predictions.
    pub correct: usize,
    /// Examples.
    pub total: usize,
    /// Correct predictions per class.
    pub per_class_correct: Vec<usize>,
    /// Examples per class.
    pub per_class_total: Vec<usize>,
}

impl Tally {
    fn new(classes: usize) -> Self {
        Self {
            per_class_correct: vec![0; classes],
            per_class_total: vec![0; classes],
            ..Self::default()
        }
    }

    fn add(&mut self, predicted: &[i64], labels: &[i64]) {
        for (p, y) in predicted.iter().zip(labels) {
            let y = *y as usize;
            self.total += 1;
            self.per_class_total[y] += 1;
            if p == &(y as i64) {
                self.correct += 1;
                self.per_class_correct[y] += 1;
            }
        }
    }

    /// Accuracy in `[0, 1]` (0 for no examples).
    pub fn accuracy(&self) -> f64 {
        self.correct as f64 / self.total.max(1) as f64
    }

    /// Accuracy of each class (`None` for classes without examples).
    pub fn per_class(&self) -> Vec<Option<f64>> {
        self.per_class_correct
            .iter()
            .zip(&self.per_class_total)
            .map(|(c, t)| (*t > 0).then(|| *c as f64 / *t as f64))
            .collect()
    }
}

/// SA and, with an attack, RA of a model on a set of batches.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EvalReport {
    /// Examples.
    pub n: usize,
    /// Standard accuracy.
    pub sa: f64,
    /// Robust accuracy under the attack (if one was given).
    pub ra: Option<f64>,
    /// Clean counts.
    pub clean: Tally,
    /// Adversarial counts.
    pub adversarial: Option<Tally>,
}

/// Evaluates `model` (an eval-mode view on an autodiff device, see
/// [`AttackMode::view`](crate::AttackMode::view)) on `batches`: SA always, RA under `attack`
/// if given. `batches` yields batches, or results of making them (the first error ends the
/// evaluation with it). Adversarial examples are crafted on `source` when given (a transfer, black-box
/// attack), on `model` itself otherwise.
///
/// ```
/// use burn::module::Module;
/// use burn::nn::{Linear, LinearConfig};
/// use burn::tensor::{Device, Distribution, Int, Tensor};
/// use dwlth_adv::{evaluate, Attack, AttackMode, Classifier};
///
/// #[derive(Module, Debug)]
/// struct Net {
///     fc: Linear,
/// }
///
/// impl Classifier for Net {
///     fn logits(&self, images: Tensor<4>) -> Tensor<2> {
///         self.fc.forward(images.flatten(1, 3))
///     }
/// }
///
/// let device = Device::flex().autodiff();
/// let (model, source) = (
///     Net { fc: LinearConfig::new(12, 2).init(&device) },
///     Net { fc: LinearConfig::new(12, 2).init(&device) },
/// );
/// let x = Tensor::<4>::random([6, 3, 2, 2], Distribution::Uniform(0.0, 1.0), &device);
/// let y = Tensor::<1, Int>::from_ints([0, 1, 0, 1, 0, 1], &device);
/// let (view, source) = (AttackMode::Eval.view(&model), AttackMode::Eval.view(&source));
/// let pgd = Attack::pgd(8.0 / 255.0, 2.0 / 255.0, 3);
/// let white_box = evaluate(&view, [(x.clone(), y.clone())], Some(&pgd), None, 2)?;
/// let black_box = evaluate(&view, [(x, y)], Some(&pgd), Some(&source), 2)?;
/// assert_eq!(white_box.sa, black_box.sa); // the same clean images
/// assert!(white_box.ra.unwrap() <= white_box.sa);
/// # Ok::<(), dwlth_adv::AdvError>(())
/// ```
pub fn evaluate<C, I>(
    model: &C,
    batches: I,
    attack: Option<&Attack>,
    source: Option<&C>,
    classes: usize,
) -> Result<EvalReport>
where
    C: Classifier,
    I: IntoIterator,
    I::Item: IntoBatch,
{
    if let Some(a) = attack {
        a.validate()?;
    }
    let mut clean = Tally::new(classes);
    let mut adversarial = attack.map(|_| Tally::new(classes));
    for batch in batches {
        let (images, labels) = batch.into_batch()?;
        let y = host_ints(labels.clone());
        check_labels(&y, classes)?;
        check_batch_shape(&images.dims(), y.len())?;
        clean.add(&host_ints(predict(model, images.clone())), &y);
        if let (Some(attack), Some(tally)) = (attack, adversarial.as_mut()) {
            let crafter = source.unwrap_or(model);
            let xa = attack.perturb(crafter, images, labels)?;
            tally.add(&host_ints(predict(model, xa)), &y);
        }
    }
    Ok(EvalReport {
        n: clean.total,
        sa: clean.accuracy(),
        ra: adversarial.as_ref().map(Tally::accuracy),
        clean,
        adversarial,
    })
}
