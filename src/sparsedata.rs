//! The sparse benchmark instances in `../shared/benchdata-sparse/`: total-variation
//! denoising duals `U(p, y) = clip(p − α D(Dᵀp − y), −λ, λ)` with `D` stored as CSR
//! (little-endian `i64` offsets and indices, `f64` values), described by a manifest each.

use fold_runtime::nalgebra::DVector;
use fold_runtime::nalgebra_sparse::CsrMatrix;
use serde_json::Value;
use std::path::{Path, PathBuf};

/// One instance.
#[derive(Debug, Clone)]
pub struct SparseInstance {
    /// The folder name (`p4_tv1d_n100000`, …).
    pub name: String,
    /// `p4_tv1d` or `p5_tv2d`.
    pub problem: String,
    /// Signal length (pixels).
    pub n: usize,
    /// Dual length (rows of `D`).
    pub m: usize,
    /// The grid shape (`[n]` in 1-D, `[N, N]` in 2-D).
    pub grid: Vec<usize>,
    /// The step `α`.
    pub alpha: f64,
    /// The bound `λ`.
    pub lam: f64,
    /// The noisy signal (the parameter).
    pub y: DVector<f64>,
    /// The loss weights of `L = g·x*`.
    pub g: DVector<f64>,
    /// The fixed point.
    pub p_star: DVector<f64>,
    /// `dL/dy`.
    pub ref_grad: DVector<f64>,
    /// The difference operator, `m × n`.
    pub d: CsrMatrix<f64>,
}

/// `../shared/benchdata-sparse` relative to the workspace root, or
/// `$FOLD_BENCHDATA_SPARSE`.
pub fn default_root() -> PathBuf {
    match std::env::var_os("FOLD_BENCHDATA_SPARSE") {
        Some(p) => PathBuf::from(p),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/benchdata-sparse"),
    }
}

fn words(path: &Path) -> Result<Vec<[u8; 8]>, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    if bytes.len() % 8 != 0 {
        return Err(format!("{}: {} bytes", path.display(), bytes.len()));
    }
    Ok(bytes
        .chunks_exact(8)
        .map(|c| {
            let mut w = [0u8; 8];
            w.copy_from_slice(c);
            w
        })
        .collect())
}

fn f64s(path: &Path) -> Result<Vec<f64>, String> {
    Ok(words(path)?.into_iter().map(f64::from_le_bytes).collect())
}

fn indices(path: &Path) -> Result<Vec<usize>, String> {
    words(path)?
        .into_iter()
        .map(|w| {
            usize::try_from(i64::from_le_bytes(w))
                .map_err(|_| format!("{}: a negative index", path.display()))
        })
        .collect()
}

/// Reads one instance directory.
pub fn load(dir: &Path) -> Result<SparseInstance, String> {
    let text = std::fs::read_to_string(dir.join("manifest.json"))
        .map_err(|e| format!("{}: {e}", dir.display()))?;
    let m: Value = serde_json::from_str(&text).map_err(|e| format!("{}: {e}", dir.display()))?;
    let num = |v: &Value, what: &str| v.as_f64().ok_or(format!("manifest: no {what}"));
    let n = num(&m["n"], "n")? as usize;
    let rows = num(&m["m"], "m")? as usize;
    let grid = m["grid_shape"]
        .as_array()
        .ok_or("manifest: no grid_shape")?
        .iter()
        .map(|v| v.as_u64().unwrap_or(0) as usize)
        .collect();
    let vector = |file: &str, len: usize| -> Result<DVector<f64>, String> {
        let v = f64s(&dir.join(file))?;
        if v.len() != len {
            return Err(format!("{file}: {} entries, expected {len}", v.len()));
        }
        Ok(DVector::from_vec(v))
    };
    let d = CsrMatrix::try_from_csr_data(
        rows,
        n,
        indices(&dir.join("D_indptr.i64"))?,
        indices(&dir.join("D_indices.i64"))?,
        f64s(&dir.join("D_data.f64"))?,
    )
    .map_err(|e| format!("{}: D is not a valid CSR matrix: {e}", dir.display()))?;
    Ok(SparseInstance {
        name: dir
            .file_name()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default(),
        problem: m["problem"]
            .as_str()
            .ok_or("manifest: no problem")?
            .to_string(),
        n,
        m: rows,
        grid,
        alpha: num(&m["scalars"]["alpha"], "alpha")?,
        lam: num(&m["scalars"]["lam"], "lam")?,
        y: vector("y.f64", n)?,
        g: vector("g.f64", n)?,
        p_star: vector("p_star.f64", rows)?,
        ref_grad: vector("ref_grad.f64", n)?,
        d,
    })
}

/// The names of every instance under `root`, sorted by problem and size.
pub fn list(root: &Path) -> Result<Vec<(String, usize, PathBuf)>, String> {
    let mut out = Vec::new();
    let entries = std::fs::read_dir(root).map_err(|e| format!("{}: {e}", root.display()))?;
    for e in entries.flatten() {
        let path = e.path();
        let manifest = path.join("manifest.json");
        if let Ok(text) = std::fs::read_to_string(&manifest) {
            let m: Value = serde_json::from_str(&text).map_err(|e| format!("{e}"))?;
            let problem = m["problem"].as_str().unwrap_or("").to_string();
            let n = m["n"].as_u64().unwrap_or(0) as usize;
            out.push((problem, n, path));
        }
    }
    out.sort_by(|a, b| (a.0.as_str(), a.1).cmp(&(b.0.as_str(), b.1)));
    Ok(out)
}
