//! The Fréchet distance between two sets of feature vectors (paper B, Table II's domain gap):
//! `‖μ₁ − μ₂‖² + Tr(Σ₁ + Σ₂ − 2 (Σ₁ Σ₂)^{1/2})`, the formula of FID (Heusel et al. 2017).
//! Computed here on whatever network's penultimate features the caller gives — a ResNet
//! ticket's, not the Inception network of FID, so the numbers are comparable among themselves
//! only.
//!
//! `Tr((Σ₁ Σ₂)^{1/2})` is the sum of the singular values of `Σ₁^{1/2} Σ₂^{1/2}` (whose squares
//! are the eigenvalues of `Σ₁ Σ₂`); the square roots come from symmetric eigendecompositions
//! (cyclic Jacobi, in `f64`), the singular values from one-sided Jacobi. Taking square roots of
//! the eigenvalues of `Σ₁^{1/2} Σ₂ Σ₁^{1/2}` instead — the textbook route — turns rounding noise
//! of size ε‖Σ‖² on the many near-zero eigenvalues of real features into errors of √ε‖Σ‖ each,
//! enough to make a set's distance from itself visibly negative.

/// Mean and covariance (divided by `n − 1`) of `n` feature vectors of dimension `d`.
#[derive(Debug, Clone, PartialEq)]
pub struct FeatureStats {
    /// Mean, `d`.
    pub mean: Vec<f64>,
    /// Covariance, `d × d` row-major.
    pub cov: Vec<f64>,
    /// Dimension.
    pub dim: usize,
}

impl FeatureStats {
    /// The statistics of `features` (`n × dim`, row-major); `None` when `n < 2` or the length
    /// is not a multiple of `dim`.
    pub fn of(features: &[f32], dim: usize) -> Option<Self> {
        if dim == 0 || features.len() % dim != 0 || features.len() / dim < 2 {
            return None;
        }
        let n = features.len() / dim;
        let mut mean = vec![0.0; dim];
        for row in features.chunks(dim) {
            for (m, x) in mean.iter_mut().zip(row) {
                *m += *x as f64;
            }
        }
        mean.iter_mut().for_each(|m| *m /= n as f64);
        let mut cov = vec![0.0; dim * dim];
        for row in features.chunks(dim) {
            for i in 0..dim {
                let di = row[i] as f64 - mean[i];
                for j in i..dim {
                    cov[i * dim + j] += di * (row[j] as f64 - mean[j]);
                }
            }
        }
        for i in 0..dim {
            for j in i..dim {
                let v = cov[i * dim + j] / (n - 1) as f64;
                cov[i * dim + j] = v;
                cov[j * dim + i] = v;
            }
        }
        Some(Self { mean, cov, dim })
    }
}

/// Eigenvalues and eigenvectors (columns) of a symmetric `d × d` matrix by cyclic Jacobi.
pub(crate) fn symmetric_eigen(a: &[f64], d: usize) -> (Vec<f64>, Vec<f64>) {
    let mut a = a.to_vec();
    let mut v = vec![0.0; d * d];
    for i in 0..d {
        v[i * d + i] = 1.0;
    }
    for _sweep in 0..100 {
        let off: f64 = (0..d)
            .flat_map(|i| (0..d).filter(move |j| *j != i).map(move |j| (i, j)))
            .map(|(i, j)| a[i * d + j].powi(2))
            .sum();
        if off < 1e-22 {
            break;
        }
        for p in 0..d {
            for q in p + 1..d {
                let apq = a[p * d + q];
                if apq.abs() < 1e-300 {
                    continue;
                }
                let theta = (a[q * d + q] - a[p * d + p]) / (2.0 * apq);
                let t = theta.signum() / (theta.abs() + (theta * theta + 1.0).sqrt());
                let t = if theta == 0.0 { 1.0 } else { t };
                let c = 1.0 / (t * t + 1.0).sqrt();
                let s = t * c;
                for k in 0..d {
                    let (akp, akq) = (a[k * d + p], a[k * d + q]);
                    a[k * d + p] = c * akp - s * akq;
                    a[k * d + q] = s * akp + c * akq;
                }
                for k in 0..d {
                    let (apk, aqk) = (a[p * d + k], a[q * d + k]);
                    a[p * d + k] = c * apk - s * aqk;
                    a[q * d + k] = s * apk + c * aqk;
                }
                for k in 0..d {
                    let (vkp, vkq) = (v[k * d + p], v[k * d + q]);
                    v[k * d + p] = c * vkp - s * vkq;
                    v[k * d + q] = s * vkp + c * vkq;
                }
            }
        }
    }
    ((0..d).map(|i| a[i * d + i]).collect(), v)
}

/// The square root of a symmetric positive semi-definite matrix (negative rounding noise in the
/// eigenvalues is clipped to 0).
fn sqrt_psd(a: &[f64], d: usize) -> Vec<f64> {
    let (values, vectors) = symmetric_eigen(a, d);
    let roots: Vec<f64> = values.iter().map(|l| l.max(0.0).sqrt()).collect();
    let mut out = vec![0.0; d * d];
    for i in 0..d {
        for j in 0..d {
            out[i * d + j] = (0..d)
                .map(|k| vectors[i * d + k] * roots[k] * vectors[j * d + k])
                .sum();
        }
    }
    out
}

/// Singular values of a `d × d` matrix by one-sided (Hestenes) Jacobi: columns are rotated
/// pairwise until mutually orthogonal, and the singular values are their norms. Accurate to
/// rounding relative to the matrix's norm, small ones included.
fn singular_values(m: &[f64], d: usize) -> Vec<f64> {
    let mut m = m.to_vec();
    let column_dot =
        |m: &[f64], p: usize, q: usize| (0..d).map(|k| m[k * d + p] * m[k * d + q]).sum::<f64>();
    for _sweep in 0..100 {
        let mut rotated = false;
        for p in 0..d {
            for q in p + 1..d {
                let (alpha, beta, gamma) = (
                    column_dot(&m, p, p),
                    column_dot(&m, q, q),
                    column_dot(&m, p, q),
                );
                if gamma.abs() <= 1e-15 * (alpha * beta).sqrt() || gamma == 0.0 {
                    continue;
                }
                rotated = true;
                let zeta = (beta - alpha) / (2.0 * gamma);
                let t = zeta.signum() / (zeta.abs() + (1.0 + zeta * zeta).sqrt());
                let c = 1.0 / (1.0 + t * t).sqrt();
                let s = c * t;
                for k in 0..d {
                    let (mkp, mkq) = (m[k * d + p], m[k * d + q]);
                    m[k * d + p] = c * mkp - s * mkq;
                    m[k * d + q] = s * mkp + c * mkq;
                }
            }
        }
        if !rotated {
            break;
        }
    }
    (0..d).map(|j| column_dot(&m, j, j).sqrt()).collect()
}

fn matmul(a: &[f64], b: &[f64], d: usize) -> Vec<f64> {
    let mut out = vec![0.0; d * d];
    for i in 0..d {
        for k in 0..d {
            let aik = a[i * d + k];
            for j in 0..d {
                out[i * d + j] += aik * b[k * d + j];
            }
        }
    }
    out
}

/// The Fréchet distance of two feature distributions of the same dimension (`None` otherwise).
pub fn frechet_distance(a: &FeatureStats, b: &FeatureStats) -> Option<f64> {
    if a.dim != b.dim {
        return None;
    }
    let d = a.dim;
    let mean_term: f64 = a
        .mean
        .iter()
        .zip(&b.mean)
        .map(|(x, y)| (x - y).powi(2))
        .sum();
    let product = matmul(&sqrt_psd(&a.cov, d), &sqrt_psd(&b.cov, d), d);
    let cross: f64 = singular_values(&product, d).iter().sum();
    let trace = |m: &[f64]| (0..d).map(|i| m[i * d + i]).sum::<f64>();
    Some(mean_term + trace(&a.cov) + trace(&b.cov) - 2.0 * cross)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(n: usize, dim: usize, shift: f32, scale: f32, seed: u64) -> Vec<f32> {
        let mut s = seed;
        (0..n * dim)
            .map(|i| {
                s = s
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                let u = (s >> 40) as f32 / (1u64 << 24) as f32 - 0.5;
                shift + scale * u + 0.1 * ((i % dim) as f32)
            })
            .collect()
    }

    #[test]
    fn matches_scipy_on_non_commuting_covariances() {
        // numpy / scipy 1.x (tools/.venv):
        //   a_mu = [0.1, -0.2, 0.3]; b_mu = [0.0, 0.4, -0.1]
        //   A = [[2.0, 0.3, 0.1], [0.3, 1.0, -0.2], [0.1, -0.2, 0.5]]
        //   B = [[1.0, -0.4, 0.2], [-0.4, 3.0, 0.6], [0.2, 0.6, 0.8]]
        //   ((a_mu - b_mu)**2).sum() + trace(A + B - 2 * scipy.linalg.sqrtm(A @ B).real)
        //   == 1.6832156792982897
        let a = FeatureStats {
            mean: vec![0.1, -0.2, 0.3],
            cov: vec![2.0, 0.3, 0.1, 0.3, 1.0, -0.2, 0.1, -0.2, 0.5],
            dim: 3,
        };
        let b = FeatureStats {
            mean: vec![0.0, 0.4, -0.1],
            cov: vec![1.0, -0.4, 0.2, -0.4, 3.0, 0.6, 0.2, 0.6, 0.8],
            dim: 3,
        };
        let d = frechet_distance(&a, &b).unwrap();
        assert!((d - 1.6832156792982897).abs() < 1e-10, "{d}");
    }

    #[test]
    fn a_set_is_at_distance_zero_from_itself() {
        let f = sample(200, 6, 0.0, 1.0, 1);
        let s = FeatureStats::of(&f, 6).unwrap();
        assert!(frechet_distance(&s, &s).unwrap().abs() < 1e-9);
    }

    #[test]
    fn rank_deficient_sets_are_at_distance_zero_from_themselves() {
        // Penultimate ReLU features: fewer samples than dimensions, some units never fire, and
        // large activations. The covariance has near-zero eigenvalues whose rounding noise must
        // not turn into square roots (√1e-14 = 1e-7 per direction).
        for (n, seed) in [(12, 4), (64, 5), (40, 6)] {
            let dim = 16;
            let mut f = sample(n, dim, 3.0, 40.0, seed);
            for row in f.chunks_mut(dim) {
                for x in row.iter_mut().step_by(3) {
                    *x = 0.0;
                }
                for x in row.iter_mut() {
                    *x = x.max(0.0);
                }
            }
            // Nearly collinear units (a random network's features): one direction carries
            // almost all the variance.
            let common = sample(n, 1, 0.0, 30.0, seed + 10);
            for (row, c) in f.chunks_mut(dim).zip(&common) {
                for (i, x) in row.iter_mut().enumerate() {
                    *x = *x * 1e-4 + c * (1.0 + i as f32 * 0.1);
                }
            }
            let s = FeatureStats::of(&f, dim).unwrap();
            let scale: f64 = (0..dim).map(|i| s.cov[i * dim + i]).sum();
            let d = frechet_distance(&s, &s).unwrap();
            assert!(d.abs() < 1e-12 * scale, "n {n}: {d} (trace {scale})");
        }
    }

    #[test]
    fn gaussians_with_known_distance() {
        // For diagonal covariances the distance is Σ (μ₁ − μ₂)² + (σ₁ − σ₂)².
        let a = FeatureStats {
            mean: vec![0.0, 1.0],
            cov: vec![4.0, 0.0, 0.0, 1.0],
            dim: 2,
        };
        let b = FeatureStats {
            mean: vec![1.0, 1.0],
            cov: vec![1.0, 0.0, 0.0, 9.0],
            dim: 2,
        };
        let expected = 1.0 + (2.0f64 - 1.0).powi(2) + (1.0f64 - 3.0).powi(2);
        assert!((frechet_distance(&a, &b).unwrap() - expected).abs() < 1e-9);
        // A non-diagonal case against the closed form for commuting matrices (Σ₂ = 2 Σ₁):
        // Tr(Σ₁ + 2Σ₁ − 2√2 Σ₁) = (3 − 2√2) Tr Σ₁.
        let c = FeatureStats {
            mean: vec![0.0, 0.0],
            cov: vec![2.0, 0.5, 0.5, 1.0],
            dim: 2,
        };
        let d = FeatureStats {
            mean: vec![0.0, 0.0],
            cov: vec![4.0, 1.0, 1.0, 2.0],
            dim: 2,
        };
        let expected = (3.0 - 2.0 * 2f64.sqrt()) * 3.0;
        assert!((frechet_distance(&c, &d).unwrap() - expected).abs() < 1e-9);
        // Shifting a set moves it away; the distance is symmetric.
        let x = FeatureStats::of(&sample(300, 4, 0.0, 1.0, 2), 4).unwrap();
        let y = FeatureStats::of(&sample(300, 4, 0.5, 1.0, 3), 4).unwrap();
        let (xy, yx) = (
            frechet_distance(&x, &y).unwrap(),
            frechet_distance(&y, &x).unwrap(),
        );
        assert!(xy > 0.5 && (xy - yx).abs() < 1e-6, "{xy} {yx}");
        assert!(FeatureStats::of(&[1.0, 2.0], 2).is_none());
    }
}
