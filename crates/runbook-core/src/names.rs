//! Object names users write: parsed as PostgreSQL parses them, tried as the catalog may spell
//! them, and, when nothing matches, the close existing names to suggest.

/// Splits a possibly qualified SQL name (`public."Scan"`, `"Scan"."Scan_pkey"`) into its parts,
/// folding unquoted parts to lower case as PostgreSQL does.
pub fn parse_qualified_name(name: &str) -> Result<Vec<String>, String> {
    parse_name(name, true)
}

/// The ways a name a user wrote may spell an object: first as SQL reads it (unquoted parts folded
/// to lower case), then, when that differs, as written. Runbooks and ORMs copy names from
/// `pg_indexes.indexname` (`Scan_dedupe_lookup_idx`, unquoted): such a name matches the object
/// the catalog spells that way when no object has the folded name.
pub fn name_spellings(name: &str) -> Result<Vec<Vec<String>>, String> {
    let folded = parse_name(name, true)?;
    let written = parse_name(name, false)?;
    Ok(if written == folded {
        vec![folded]
    } else {
        vec![folded, written]
    })
}

/// Up to three of `existing` that look like `wanted`: the same name in another case, or within a
/// small edit distance (a third of the name's length, at least 1; a swap of two neighbouring
/// characters counts as one edit), closest first.
pub fn close_names(wanted: &str, existing: &[String]) -> Vec<String> {
    let w = wanted.to_lowercase();
    let limit = (w.chars().count() / 3).max(1);
    let mut scored: Vec<(usize, &String)> = existing
        .iter()
        .map(|e| (edit_distance(&w, &e.to_lowercase()), e))
        .filter(|(d, e)| *d <= limit && e.as_str() != wanted)
        .collect();
    scored.sort();
    scored.dedup_by(|a, b| a.1 == b.1);
    scored.into_iter().take(3).map(|(_, e)| e.clone()).collect()
}

/// Edit distance by characters (optimal string alignment: insertions, deletions, substitutions
/// and swaps of neighbours, each one edit).
fn edit_distance(a: &str, b: &str) -> usize {
    let (a, b): (Vec<char>, Vec<char>) = (a.chars().collect(), b.chars().collect());
    let mut d = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in d.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in d[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut best = (d[i - 1][j] + 1)
                .min(d[i][j - 1] + 1)
                .min(d[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                best = best.min(d[i - 2][j - 2] + 1);
            }
            d[i][j] = best;
        }
    }
    d[a.len()][b.len()]
}

fn parse_name(name: &str, fold: bool) -> Result<Vec<String>, String> {
    let mut parts = Vec::new();
    let mut chars = name.trim().chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        let mut part = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            loop {
                match chars.next() {
                    Some('"') if chars.peek() == Some(&'"') => {
                        chars.next();
                        part.push('"');
                    }
                    Some('"') => break,
                    Some(c) => part.push(c),
                    None => return Err(format!("unterminated quoted identifier in \"{name}\"")),
                }
            }
            if part.is_empty() {
                return Err(format!("zero-length quoted identifier in \"{name}\""));
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c == '.' || c.is_whitespace() {
                    break;
                }
                if c == '"' {
                    return Err(format!("misplaced quote in \"{name}\""));
                }
                if fold {
                    part.extend(c.to_lowercase());
                } else {
                    part.push(c);
                }
                chars.next();
            }
            if part.is_empty() {
                return Err(format!("\"{name}\" is not a valid name"));
            }
        }
        parts.push(part);
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        match chars.next() {
            None => break,
            Some('.') => continue,
            Some(c) => return Err(format!("unexpected \"{c}\" in \"{name}\"")),
        }
    }
    if parts.len() > 3 {
        return Err(format!("\"{name}\" has too many dotted parts"));
    }
    Ok(parts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_tried_folded_then_as_written() {
        assert_eq!(
            name_spellings("Scan_dedupe_lookup_idx").unwrap(),
            vec![
                vec!["scan_dedupe_lookup_idx".to_string()],
                vec!["Scan_dedupe_lookup_idx".to_string()]
            ]
        );
        assert_eq!(
            name_spellings("\"App\".orders").unwrap(),
            vec![vec!["App".to_string(), "orders".to_string()]]
        );
    }

    #[test]
    fn close_names_suggest_other_cases_and_typos_but_not_strangers() {
        let existing: Vec<String> = ["Scan_dedupe_lookup_idx", "Scan_pkey", "orders_user_idx"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(
            close_names("scan_dedupe_lookup_idx", &existing),
            vec!["Scan_dedupe_lookup_idx"]
        );
        assert_eq!(
            close_names("Scan_dedup_lookup_idx", &existing),
            vec!["Scan_dedupe_lookup_idx"]
        );
        assert!(close_names("invoices_idx", &existing).is_empty());
        // A swap is one edit; a short name must be nearly the same.
        let tables: Vec<String> = vec!["Scan".into(), "bb".into()];
        assert_eq!(close_names("Scna", &tables), vec!["Scan"]);
        assert!(close_names("AT", &tables).is_empty());
    }

    #[test]
    fn names_parse_like_postgresql_identifiers() {
        assert_eq!(
            parse_qualified_name("public.\"Scan\"").unwrap(),
            vec!["public", "Scan"]
        );
        assert_eq!(parse_qualified_name("Orders").unwrap(), vec!["orders"]);
        assert_eq!(
            parse_qualified_name("\"a\"\"b\" . c").unwrap(),
            vec!["a\"b", "c"]
        );
        assert_eq!(parse_qualified_name("\"a.b\"").unwrap(), vec!["a.b"]);
        assert!(parse_qualified_name("").is_err());
        assert!(parse_qualified_name("a..b").is_err());
        assert!(parse_qualified_name("\"open").is_err());
        assert!(parse_qualified_name("a b").is_err());
        assert!(parse_qualified_name("a.b.c.d").is_err());
    }
}
