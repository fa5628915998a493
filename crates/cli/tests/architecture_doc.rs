//! `ARCHITECTURE.md` names real code: every backticked `crates/<…>.rs::<function>` in it
//! points at a file that exists and defines `fn <function>` (a free function or a
//! method). Renaming or moving a function without updating the page fails here.

use std::path::Path;

const DOC: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../ARCHITECTURE.md");

/// One `crates/<path>.rs::<ident>` reference, as written in the doc.
struct Reference {
    text: String,
    path: String,
    ident: String,
}

fn is_ident_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// Every backticked span that starts with `crates/` and contains `.rs::`. A span that
/// does not end in a plain identifier is returned with an empty `ident` (reported as
/// malformed).
fn references(doc: &str) -> Vec<Reference> {
    let mut out = Vec::new();
    let mut from = 0;
    while let Some(i) = doc[from..].find("`crates/") {
        let start = from + i + 1;
        let Some(len) = doc[start..].find('`') else {
            break;
        };
        let span = &doc[start..start + len];
        from = start + len + 1;
        if span.contains('\n') {
            continue;
        }
        let Some((file, ident)) = span.split_once(".rs::") else {
            continue;
        };
        let ok = !ident.is_empty()
            && !ident.starts_with(|c: char| c.is_ascii_digit())
            && ident.chars().all(is_ident_char);
        out.push(Reference {
            text: span.to_string(),
            path: format!("{file}.rs"),
            ident: if ok { ident.to_string() } else { String::new() },
        });
    }
    out
}

/// Whether `src` has `fn <ident>` followed by `(` or `<`, with no identifier character
/// right before `fn`.
fn defines(src: &str, ident: &str) -> bool {
    let needle = format!("fn {ident}");
    let mut from = 0;
    while let Some(i) = src[from..].find(&needle) {
        let at = from + i;
        let before_ok = src[..at]
            .chars()
            .next_back()
            .is_none_or(|c| !is_ident_char(c));
        let after = src[at + needle.len()..].chars().next();
        if before_ok && matches!(after, Some('(' | '<')) {
            return true;
        }
        from = at + needle.len();
    }
    false
}

#[test]
fn architecture_names_only_functions_that_exist() {
    let doc = std::fs::read_to_string(DOC).unwrap_or_else(|e| panic!("reading {DOC}: {e}"));
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let refs = references(&doc);
    let mut failures = Vec::new();
    for r in &refs {
        if r.ident.is_empty() {
            failures.push(format!("`{}`: not `path.rs::identifier`", r.text));
            continue;
        }
        let file = root.join(&r.path);
        match std::fs::read_to_string(&file) {
            Err(e) => failures.push(format!("`{}`: cannot read {}: {e}", r.text, r.path)),
            Ok(src) if !defines(&src, &r.ident) => {
                failures.push(format!("`{}`: {} has no `fn {}`", r.text, r.path, r.ident))
            }
            Ok(_) => {}
        }
    }
    assert!(
        failures.is_empty(),
        "ARCHITECTURE.md names {} function(s) that do not exist:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert!(
        refs.len() >= 20,
        "ARCHITECTURE.md should follow a job through at least 20 functions; found {}",
        refs.len()
    );
}
