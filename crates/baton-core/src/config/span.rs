//! Where in `baton.toml` a key is written: the line and column an error points at.

/// The 1-based line and column of byte `offset`.
pub(super) fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let col = before.rfind('\n').map(|i| offset - i).unwrap_or(offset + 1);
    (line, col)
}

/// The dotted key written on the line holding `offset`, prefixed by the enclosing `[table]`.
pub(super) fn key_at(text: &str, offset: usize) -> Option<String> {
    let offset = offset.min(text.len());
    let line_start = text[..offset].rfind('\n').map(|i| i + 1).unwrap_or(0);
    let line_end = text[offset..]
        .find('\n')
        .map(|i| offset + i)
        .unwrap_or(text.len());
    let line = text[line_start..line_end].trim();
    let table = text[..line_start]
        .lines()
        .rev()
        .map(str::trim)
        .find(|l| l.starts_with('['))
        .map(|l| l.trim_matches(|c| c == '[' || c == ']').trim().to_string());
    if line.starts_with('[') {
        return Some(
            line.trim_matches(|c| c == '[' || c == ']')
                .trim()
                .to_string(),
        );
    }
    let key = line.split('=').next()?.trim();
    if key.is_empty() || key.starts_with('#') {
        return table;
    }
    Some(match table {
        Some(t) => format!("{t}.{key}"),
        None => key.to_string(),
    })
}

/// Finds the line and column where the dotted `path` is written; falls back to its table.
pub(super) fn locate(text: &str, path: &[&str]) -> (usize, usize) {
    let mut best = (1, 1);
    let mut table: Vec<String> = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        let indent = raw.len() - raw.trim_start().len();
        if line.starts_with('[') {
            let line = line.split('#').next().unwrap_or("").trim();
            table = line
                .trim_matches(|c| c == '[' || c == ']')
                .split('.')
                .map(|s| s.trim().trim_matches('"').to_string())
                .collect();
            if table.len() <= path.len() && table.iter().zip(path).all(|(a, b)| a == b) {
                best = (i + 1, indent + 1);
            }
            continue;
        }
        let Some((key, _)) = line.split_once('=') else {
            continue;
        };
        let mut full = table.clone();
        full.extend(
            key.split('.')
                .map(|s| s.trim().trim_matches('"').to_string()),
        );
        if full.len() == path.len() && full.iter().zip(path).all(|(a, b)| a == b) {
            return (i + 1, indent + 1);
        }
        // an inline table holding the key: `health = { path = "x" }`
        if full.len() < path.len() && full.iter().zip(path).all(|(a, b)| a == b) {
            let leaf = path[path.len() - 1];
            if let Some(pos) = raw.find(leaf) {
                return (i + 1, pos + 1);
            }
        }
    }
    best
}
