//! Out-of-distribution detection (paper B, Fig. 8): score each image by its maximum softmax
//! probability (MSP, Hendrycks & Gimpel 2017); a good detector gives in-distribution images
//! higher scores, measured by the ROC-AUC of in- against out-of-distribution scores.

use burn::tensor::activation::softmax;
use burn::tensor::Tensor;

/// The maximum softmax probability of each row of `logits` `[N, K]`.
pub fn max_softmax_probability(logits: Tensor<2>) -> Vec<f32> {
    let [n, _] = logits.dims();
    softmax(logits, 1)
        .max_dim(1)
        .reshape([n])
        .into_data()
        .try_to_vec_as::<f32>()
        .unwrap_or_default()
}

/// ROC-AUC of `positive` scores (in-distribution) against `negative` ones: the probability that
/// a random positive scores above a random negative, ties counting one half (the
/// Mann–Whitney statistic). `None` when either side is empty or a score is NaN.
pub fn roc_auc(positive: &[f32], negative: &[f32]) -> Option<f64> {
    if positive.is_empty()
        || negative.is_empty()
        || positive.iter().chain(negative).any(|s| s.is_nan())
    {
        return None;
    }
    // Rank all scores together (average ranks for ties), then sum the positives' ranks.
    let mut all: Vec<(f32, bool)> = positive
        .iter()
        .map(|s| (*s, true))
        .chain(negative.iter().map(|s| (*s, false)))
        .collect();
    all.sort_by(|a, b| a.0.total_cmp(&b.0));
    let mut rank_sum = 0.0;
    let mut i = 0;
    while i < all.len() {
        let mut j = i;
        while j + 1 < all.len() && all[j + 1].0 == all[i].0 {
            j += 1;
        }
        let average = (i + j) as f64 / 2.0 + 1.0;
        rank_sum += all[i..=j].iter().filter(|(_, p)| *p).count() as f64 * average;
        i = j + 1;
    }
    let (p, n) = (positive.len() as f64, negative.len() as f64);
    Some((rank_sum - p * (p + 1.0) / 2.0) / (p * n))
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::{Device, TensorData};

    #[test]
    fn perfect_identical_and_reversed_detectors() {
        assert_eq!(roc_auc(&[0.9, 0.8, 0.95], &[0.1, 0.3]), Some(1.0));
        assert_eq!(roc_auc(&[0.1, 0.3], &[0.9, 0.8, 0.95]), Some(0.0));
        assert_eq!(roc_auc(&[0.5, 0.7, 0.2], &[0.5, 0.7, 0.2]), Some(0.5));
        // sklearn.metrics.roc_auc_score([1,1,1,0,0,0], [0.9,0.4,0.6,0.5,0.4,0.1]) == 0.8333...
        let auc = roc_auc(&[0.9, 0.4, 0.6], &[0.5, 0.4, 0.1]).unwrap();
        assert!((auc - 5.0 / 6.0).abs() < 1e-12, "{auc}");
        assert_eq!(roc_auc(&[], &[0.1]), None);
        assert_eq!(roc_auc(&[f32::NAN], &[0.1]), None);
    }

    #[test]
    fn msp_is_the_largest_softmax_probability() {
        let logits = Tensor::<2>::from_data(
            TensorData::new(vec![0.0f32, 0.0, 2.0, 0.0], [2, 2]),
            &Device::flex(),
        );
        let msp = max_softmax_probability(logits);
        assert!((msp[0] - 0.5).abs() < 1e-6);
        assert!((msp[1] - 1.0 / (1.0 + (-2.0f32).exp())).abs() < 1e-6);
    }
}
