//! Index rules: which index makes another redundant, and the names and statements suggested.
//!
//! The extension reads every index of the user's tables in one catalog query and hands them here
//! as [`IndexDef`]s; nothing in this module talks to PostgreSQL.

use std::collections::HashMap;

/// One index as the catalog describes it. Key columns are compared by their catalog identity:
/// `"#3"` for table column 3, the deparsed expression text for an expression key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexDef {
    /// Anything unique and stable (the index's oid); used to name the covering index.
    pub id: i64,
    pub table_id: i64,
    /// Used to order exact duplicates deterministically.
    pub name: String,
    /// The access method ("btree", "hash", "gin", ...).
    pub method: String,
    pub keys: Vec<String>,
    /// Per key: operator class, collation and sort option (pg_index.indclass/indcollation/indoption).
    pub opclasses: Vec<i64>,
    pub collations: Vec<i64>,
    pub options: Vec<i16>,
    /// INCLUDE columns.
    pub include: Vec<String>,
    /// The deparsed WHERE clause of a partial index.
    pub predicate: Option<String>,
    pub unique: bool,
    /// Backs a primary key, unique or exclusion constraint: never recommended for dropping.
    pub backs_constraint: bool,
    /// Valid and ready: only such an index can stand in for another.
    pub usable: bool,
}

impl IndexDef {
    /// Key i with everything that decides whether two keys are interchangeable.
    fn key(&self, i: usize) -> (&str, Option<i64>, Option<i64>, Option<i16>) {
        (
            self.keys[i].as_str(),
            self.opclasses.get(i).copied(),
            self.collations.get(i).copied(),
            self.options.get(i).copied(),
        )
    }

    fn keys_lead(&self, other: &IndexDef) -> bool {
        self.keys.len() <= other.keys.len()
            && (0..self.keys.len()).all(|i| self.key(i) == other.key(i))
    }

    fn same_keys(&self, other: &IndexDef) -> bool {
        self.keys.len() == other.keys.len() && self.keys_lead(other)
    }

    /// Every INCLUDE column of self is stored by `other` too (as a key or an INCLUDE column).
    fn includes_covered_by(&self, other: &IndexDef) -> bool {
        self.include
            .iter()
            .all(|c| other.keys.contains(c) || other.include.contains(c))
    }

    /// Which of two exact duplicates to keep: a constraint's index, then a unique one, then the
    /// one whose name sorts first.
    fn keep_rank(&self) -> (bool, bool, &str) {
        (!self.backs_constraint, !self.unique, self.name.as_str())
    }
}

/// Why an index is redundant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    Duplicate,
    Prefix,
}

impl Reason {
    pub fn describe(self) -> &'static str {
        match self {
            Reason::Duplicate => "exact duplicate",
            Reason::Prefix => "key columns are a leading prefix of the covering index's keys",
        }
    }
}

/// `index` may be dropped because `covered_by` serves every query it serves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Redundancy {
    pub index: i64,
    pub covered_by: i64,
    pub reason: Reason,
}

/// Whether `a` is made redundant by `b` (both on the same table), and why.
///
/// `a` is redundant when `b` has the same method, predicate and INCLUDE coverage, and `a`'s keys
/// (with operator classes, collations and sort order) are `b`'s keys or, for btree, lead them.
/// An index backing a constraint is never redundant, and a unique index is only redundant to a
/// unique index on exactly the same keys: a longer unique index does not enforce the shorter's
/// uniqueness, and a non-unique one enforces none.
pub fn redundant_to(a: &IndexDef, b: &IndexDef) -> Option<Reason> {
    if a.id == b.id || a.table_id != b.table_id || a.backs_constraint || !b.usable {
        return None;
    }
    if a.method != b.method || a.predicate != b.predicate || !a.includes_covered_by(b) {
        return None;
    }
    if a.same_keys(b) {
        if a.unique && !b.unique {
            return None;
        }
        // Of two exact duplicates only one goes: the one that ranks lower.
        if b.includes_covered_by(a) && b.keep_rank() > a.keep_rank() {
            return None;
        }
        return Some(Reason::Duplicate);
    }
    if a.unique || a.method != "btree" || !a.keys_lead(b) {
        return None;
    }
    Some(Reason::Prefix)
}

/// Every redundant index, each with the index that covers it (for a prefix, the shortest
/// covering index; ties by name). An index that is itself redundant still covers others: when
/// (a) and (a) both lie under (a, b), each names the one it is redundant to.
pub fn find_redundant(indexes: &[IndexDef]) -> Vec<Redundancy> {
    let mut by_table: HashMap<i64, Vec<&IndexDef>> = HashMap::new();
    for ix in indexes {
        by_table.entry(ix.table_id).or_default().push(ix);
    }
    let mut found = Vec::new();
    for ix in indexes {
        let siblings = &by_table[&ix.table_id];
        if siblings.len() < 2 {
            continue;
        }
        let best = siblings
            .iter()
            .filter_map(|other| redundant_to(ix, other).map(|r| (other, r)))
            .min_by(|(x, rx), (y, ry)| {
                let rank = |r: &Reason| if *r == Reason::Duplicate { 0 } else { 1 };
                (rank(rx), x.keys.len(), x.keep_rank()).cmp(&(
                    rank(ry),
                    y.keys.len(),
                    y.keep_rank(),
                ))
            });
        if let Some((other, reason)) = best {
            found.push(Redundancy {
                index: ix.id,
                covered_by: other.id,
                reason,
            });
        }
    }
    found
}

/// An index as the foreign-key rule sees it.
pub struct FkServer<'a> {
    pub id: i64,
    pub table_id: i64,
    pub name: &'a str,
    /// The foreign keys of its table it can serve (its leading keys are the key's columns).
    pub fks: &'a [String],
    /// Whether it would be offered for dropping, foreign keys aside.
    pub droppable: bool,
}

/// The droppable indexes that must stay so that every foreign key keeps an index to serve it,
/// each with the key it is kept for. A key served by an index that stays anyway needs none;
/// otherwise the first of its servers by name stays (so of two unscanned duplicates serving the
/// same key, one is kept, not both dropped).
pub fn fk_keepers(indexes: &[FkServer]) -> HashMap<i64, String> {
    let mut servers: std::collections::BTreeMap<(i64, &str), Vec<&FkServer>> =
        std::collections::BTreeMap::new();
    for ix in indexes {
        for fk in ix.fks {
            servers
                .entry((ix.table_id, fk.as_str()))
                .or_default()
                .push(ix);
        }
    }
    let mut kept: HashMap<i64, String> = HashMap::new();
    for ((_, fk), group) in servers {
        if group
            .iter()
            .any(|s| !s.droppable || kept.contains_key(&s.id))
        {
            continue;
        }
        if let Some(first) = group.iter().min_by_key(|s| s.name) {
            kept.insert(first.id, fk.to_string());
        }
    }
    kept
}

/// What zero scans of an index mean, given how long the statistics have counted.
#[derive(Debug, Clone, PartialEq)]
pub enum Usage {
    /// Scanned since statistics were reset.
    Used,
    /// Not scanned over a window long enough to say so.
    Unused,
    /// Not scanned, but the window says nothing: why.
    Unknown(String),
}

/// Zero scans are evidence only over a long enough window, and only on the server that serves
/// the queries: a standby counts its own scans, not the primary's (and the reverse).
pub fn judge_usage(scans: i64, stats_age_s: f64, min_age_s: f64, standby: bool) -> Usage {
    if scans > 0 {
        return Usage::Used;
    }
    if standby {
        return Usage::Unknown(
            "on a standby: these statistics count this server's scans only, not the primary's; \
             judge unused indexes on the primary and on every standby"
                .into(),
        );
    }
    if stats_age_s < min_age_s {
        return Usage::Unknown(format!(
            "statistics cover only {}, less than the {} required \
             (pg_runbook.unused_index_min_stats_age)",
            human_seconds(stats_age_s),
            human_seconds(min_age_s)
        ));
    }
    Usage::Unused
}

/// Seconds as "3.5 h" or "12.0 d".
pub fn human_seconds(s: f64) -> String {
    if s < 3600.0 {
        format!("{:.0} min", s / 60.0)
    } else if s < 86_400.0 {
        format!("{:.1} h", s / 3600.0)
    } else {
        format!("{:.1} d", s / 86_400.0)
    }
}

/// `ident` as a quoted SQL identifier, always quoted: `Scan` -> `"Scan"`, `a"b` -> `"a""b"`.
pub fn quote_ident(ident: &str) -> String {
    format!("\"{}\"", ident.replace('"', "\"\""))
}

/// `"schema"."name"`.
pub fn qualified(schema: &str, name: &str) -> String {
    format!("{}.{}", quote_ident(schema), quote_ident(name))
}

/// PostgreSQL truncates identifiers to 63 bytes; cut on a character boundary.
fn truncate_ident(name: &str) -> String {
    let mut end = name.len().min(63);
    while !name.is_char_boundary(end) {
        end -= 1;
    }
    name[..end].to_string()
}

/// A name for a new index on `table(columns)`, PostgreSQL's own style: `table_col1_col2_idx`.
pub fn index_name(table: &str, columns: &[String]) -> String {
    let body = format!("{}_{}", table, columns.join("_"));
    let max_body = 63 - "_idx".len();
    format!(
        "{}_idx",
        truncate_ident(&body[..floor_boundary(&body, max_body)])
    )
}

fn floor_boundary(s: &str, max: usize) -> usize {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    end
}

/// `CREATE INDEX CONCURRENTLY` for the referencing columns of a foreign key.
pub fn create_index_statement(schema: &str, table: &str, columns: &[String]) -> String {
    let cols: Vec<String> = columns.iter().map(|c| quote_ident(c)).collect();
    format!(
        "CREATE INDEX CONCURRENTLY {} ON {} ({})",
        quote_ident(&index_name(table, columns)),
        qualified(schema, table),
        cols.join(", ")
    )
}

/// `DROP INDEX CONCURRENTLY IF EXISTS "schema"."index"`.
pub fn drop_index_statement(schema: &str, index: &str) -> String {
    format!(
        "DROP INDEX CONCURRENTLY IF EXISTS {}",
        qualified(schema, index)
    )
}

#[cfg(test)]
mod usage_tests {
    use super::*;

    #[test]
    fn a_foreign_key_keeps_one_index_but_not_more_than_it_needs() {
        let fk = vec!["Scan_userId_fkey".to_string()];
        let none: Vec<String> = Vec::new();
        let server = |id: i64, name: &'static str, droppable: bool| FkServer {
            id,
            table_id: 1,
            name,
            fks: if id == 9 { &none } else { &fk },
            droppable,
        };
        // Two unscanned duplicates: the first by name stays.
        let kept = fk_keepers(&[server(1, "b_idx", true), server(2, "a_idx", true)]);
        assert_eq!(kept.get(&2).map(String::as_str), Some("Scan_userId_fkey"));
        assert!(!kept.contains_key(&1));
        // A scanned index serves the key: the unscanned one may go.
        assert!(fk_keepers(&[server(1, "b_idx", true), server(2, "a_idx", false)]).is_empty());
        // An index serving no key is never kept for one.
        assert!(fk_keepers(&[server(9, "x_idx", true)]).is_empty());
    }

    #[test]
    fn zero_scans_over_young_statistics_are_unknown_with_their_age() {
        match judge_usage(0, 7200.0, 7.0 * 86_400.0, false) {
            Usage::Unknown(why) => assert!(why.contains("2.0 h"), "{why}"),
            other => panic!("{other:?}"),
        }
        assert_eq!(
            judge_usage(0, 8.0 * 86_400.0, 7.0 * 86_400.0, false),
            Usage::Unused
        );
        assert_eq!(judge_usage(3, 60.0, 7.0 * 86_400.0, false), Usage::Used);
    }

    #[test]
    fn a_standby_never_calls_an_index_unused() {
        assert!(matches!(
            judge_usage(0, 365.0 * 86_400.0, 0.0, true),
            Usage::Unknown(_)
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ix(id: i64, name: &str, keys: &[&str]) -> IndexDef {
        IndexDef {
            id,
            table_id: 1,
            name: name.into(),
            method: "btree".into(),
            keys: keys.iter().map(|k| k.to_string()).collect(),
            opclasses: vec![10; keys.len()],
            collations: vec![100; keys.len()],
            options: vec![0; keys.len()],
            include: vec![],
            predicate: None,
            unique: false,
            backs_constraint: false,
            usable: true,
        }
    }

    #[test]
    fn leading_prefix_is_redundant_to_the_longer_index() {
        let single = ix(1, "Scan_normalizedInput_idx", &["#2"]);
        let pair = ix(2, "Scan_normalizedInput_createdAt_idx", &["#2", "#3"]);
        let found = find_redundant(&[single, pair]);
        assert_eq!(
            found,
            vec![Redundancy {
                index: 1,
                covered_by: 2,
                reason: Reason::Prefix
            }]
        );
    }

    #[test]
    fn a_non_leading_column_is_not_a_prefix() {
        let found = find_redundant(&[ix(1, "a", &["#3"]), ix(2, "b", &["#2", "#3"])]);
        assert!(found.is_empty());
    }

    #[test]
    fn exact_duplicates_drop_exactly_one_of_the_pair() {
        let found = find_redundant(&[ix(1, "b_idx", &["#2"]), ix(2, "a_idx", &["#2"])]);
        assert_eq!(
            found,
            vec![Redundancy {
                index: 1,
                covered_by: 2,
                reason: Reason::Duplicate
            }]
        );
    }

    #[test]
    fn a_constraint_index_is_never_redundant_and_is_kept_over_a_duplicate() {
        let mut pk = ix(1, "z_pkey", &["#1"]);
        pk.backs_constraint = true;
        pk.unique = true;
        let plain = ix(2, "a_idx", &["#1"]);
        let found = find_redundant(&[pk, plain]);
        assert_eq!(
            found,
            vec![Redundancy {
                index: 2,
                covered_by: 1,
                reason: Reason::Duplicate
            }]
        );
    }

    #[test]
    fn a_unique_index_is_not_redundant_to_a_non_unique_or_longer_one() {
        let mut uniq = ix(1, "u", &["#1"]);
        uniq.unique = true;
        assert_eq!(redundant_to(&uniq, &ix(2, "same", &["#1"])), None);
        assert_eq!(redundant_to(&uniq, &ix(3, "longer", &["#1", "#2"])), None);
        let mut uniq_longer = ix(4, "ul", &["#1", "#2"]);
        uniq_longer.unique = true;
        assert_eq!(redundant_to(&uniq, &uniq_longer), None);
    }

    #[test]
    fn different_predicates_opclasses_collations_or_order_are_not_redundant() {
        let base = ix(1, "a", &["#1"]);
        let mut partial = ix(2, "b", &["#1", "#2"]);
        partial.predicate = Some("(deleted_at IS NULL)".into());
        assert_eq!(redundant_to(&base, &partial), None);
        let mut pattern_ops = ix(3, "c", &["#1", "#2"]);
        pattern_ops.opclasses = vec![11, 10];
        assert_eq!(redundant_to(&base, &pattern_ops), None);
        let mut collated = ix(4, "d", &["#1", "#2"]);
        collated.collations = vec![950, 100];
        assert_eq!(redundant_to(&base, &collated), None);
        let mut desc = ix(5, "e", &["#1", "#2"]);
        desc.options = vec![3, 0];
        assert_eq!(redundant_to(&base, &desc), None);
    }

    #[test]
    fn partial_indexes_with_the_same_predicate_compare_by_keys() {
        let mut a = ix(1, "a", &["#1"]);
        a.predicate = Some("(active)".into());
        let mut b = ix(2, "b", &["#1", "#2"]);
        b.predicate = Some("(active)".into());
        assert_eq!(redundant_to(&a, &b), Some(Reason::Prefix));
    }

    #[test]
    fn expression_keys_must_match_exactly() {
        let a = ix(1, "a", &["lower(email)"]);
        let b = ix(2, "b", &["lower(email)", "#3"]);
        let c = ix(3, "c", &["#2", "#3"]);
        assert_eq!(redundant_to(&a, &b), Some(Reason::Prefix));
        assert_eq!(redundant_to(&a, &c), None);
    }

    #[test]
    fn prefix_rule_is_btree_only_and_needs_a_usable_cover() {
        let mut a = ix(1, "a", &["#1"]);
        a.method = "gin".into();
        let mut b = ix(2, "b", &["#1", "#2"]);
        b.method = "gin".into();
        assert_eq!(redundant_to(&a, &b), None);
        let mut invalid = ix(3, "c", &["#1", "#2"]);
        invalid.usable = false;
        assert_eq!(redundant_to(&ix(4, "d", &["#1"]), &invalid), None);
    }

    #[test]
    fn include_columns_must_be_stored_by_the_cover() {
        let mut a = ix(1, "a", &["#1"]);
        a.include = vec!["#5".into()];
        assert_eq!(redundant_to(&a, &ix(2, "b", &["#1", "#2"])), None);
        assert_eq!(
            redundant_to(&a, &ix(3, "c", &["#1", "#5"])),
            Some(Reason::Prefix)
        );
    }

    #[test]
    fn indexes_on_different_tables_never_cover_each_other() {
        let a = ix(1, "a", &["#1"]);
        let mut b = ix(2, "b", &["#1", "#2"]);
        b.table_id = 7;
        assert!(find_redundant(&[a, b]).is_empty());
    }

    #[test]
    fn statements_quote_every_identifier() {
        assert_eq!(
            create_index_statement("App", "Scan", &["userId".into(), "we\"ird".into()]),
            "CREATE INDEX CONCURRENTLY \"Scan_userId_we\"\"ird_idx\" ON \"App\".\"Scan\" (\"userId\", \"we\"\"ird\")"
        );
        assert_eq!(
            drop_index_statement("public", "x"),
            "DROP INDEX CONCURRENTLY IF EXISTS \"public\".\"x\""
        );
    }

    #[test]
    fn generated_index_names_fit_in_63_bytes() {
        let long = "t".repeat(80);
        let name = index_name(&long, &["c".into()]);
        assert!(name.len() <= 63 && name.ends_with("_idx"), "{name}");
        let multibyte = "é".repeat(40);
        assert!(index_name(&multibyte, &["c".into()]).len() <= 63);
    }
}

/// A stored expression tree (`pg_node_tree` text, as in pg_index.indexprs / indpred) without its
/// `:location N` fields, which only record where the expression stood in its CREATE INDEX
/// statement: two indexes with the same expression then compare equal. Reading the stored tree
/// costs nothing, where deparsing it (pg_get_expr, pg_get_indexdef) is slow on 10,000 indexes.
pub fn normalize_node_tree(tree: &str) -> String {
    let mut out = String::with_capacity(tree.len());
    let mut rest = tree;
    while let Some(at) = rest.find(":location ") {
        out.push_str(&rest[..at]);
        let after = &rest[at + ":location ".len()..];
        let end = after
            .char_indices()
            .find(|&(i, c)| !(c.is_ascii_digit() || (i == 0 && c == '-')))
            .map_or(after.len(), |(i, _)| i);
        rest = &after[end..];
    }
    out.push_str(rest);
    out
}

/// The elements of a stored expression list, `({A ...} {B ...})` -> `["{A ...}", "{B ...}"]`.
/// Tokens escape braces and parentheses with a backslash, so depth counting skips escaped chars.
pub fn split_node_list(tree: &str) -> Vec<String> {
    let mut items = Vec::new();
    let mut depth = 0usize;
    let mut start = None;
    let mut chars = tree.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '\\' => {
                chars.next();
            }
            '{' => {
                if depth == 0 {
                    start = Some(i);
                }
                depth += 1;
            }
            '}' => {
                depth = depth.saturating_sub(1);
                if depth == 0
                    && let Some(s) = start.take()
                {
                    items.push(tree[s..=i].to_string());
                }
            }
            _ => {}
        }
    }
    items
}

#[cfg(test)]
mod node_tree_tests {
    use super::*;

    #[test]
    fn locations_do_not_count() {
        let a =
            "({FUNCEXPR :funcid 870 :args ({VAR :varno 1 :varattno 3 :location 48}) :location 42})";
        let b =
            "({FUNCEXPR :funcid 870 :args ({VAR :varno 1 :varattno 3 :location 7}) :location -1})";
        assert_eq!(normalize_node_tree(a), normalize_node_tree(b));
        let c =
            "({FUNCEXPR :funcid 871 :args ({VAR :varno 1 :varattno 3 :location 48}) :location 42})";
        assert_ne!(normalize_node_tree(a), normalize_node_tree(c));
    }

    #[test]
    fn expression_lists_split_at_the_top_level_only() {
        let list = "({FUNCEXPR :args ({VAR :varattno 3})} {OPEXPR :args ({CONST :constvalue 5 [ 123 125 0 0 0 ]} {VAR \\{x})})";
        let items = split_node_list(list);
        assert_eq!(items.len(), 2);
        assert!(items[0].starts_with("{FUNCEXPR") && items[1].starts_with("{OPEXPR"));
    }
}
