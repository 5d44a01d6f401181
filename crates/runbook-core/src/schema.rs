//! Schema baselines: comparing a snapshot with the schema now, and the rollback DDL that undoes
//! the difference, in an order that PostgreSQL accepts.

use crate::indexes::{drop_index_statement, qualified, quote_ident};
use std::collections::BTreeMap;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    Index,
    Constraint,
    MaterializedView,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Index => "index",
            Kind::Constraint => "constraint",
            Kind::MaterializedView => "materialized view",
        }
    }

    pub fn parse(s: &str) -> Option<Kind> {
        match s {
            "index" => Some(Kind::Index),
            "constraint" => Some(Kind::Constraint),
            "materialized view" => Some(Kind::MaterializedView),
            _ => None,
        }
    }
}

/// One object of a baseline or of the schema now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SchemaObject {
    pub kind: Kind,
    pub schema: String,
    /// The table an index or constraint belongs to; the view's own name for a materialized view.
    pub table: String,
    pub name: String,
    /// pg_get_indexdef / pg_get_constraintdef / pg_get_viewdef.
    pub definition: String,
    /// An index that is valid and ready; a validated constraint; a populated materialized view.
    pub valid: bool,
    /// pg_constraint.contype for constraints ('p', 'u', 'x', 'f', 'c').
    pub contype: Option<char>,
    /// An index on a partitioned table cannot be built or dropped CONCURRENTLY.
    pub partitioned: bool,
    /// A partition's copy of its parent's index or constraint. Kept in the snapshot so that a
    /// partition detached later keeps its own copy (it is then the same object, no longer a
    /// copy), but never dropped or re-created by itself: it comes and goes with its parent.
    pub inherited: bool,
}

impl SchemaObject {
    /// Identity across snapshots: index and view names are unique per schema, constraint names per table.
    fn key(&self) -> (Kind, String, String, String) {
        let table = if self.kind == Kind::Constraint {
            self.table.clone()
        } else {
            String::new()
        };
        (self.kind, self.schema.clone(), table, self.name.clone())
    }

    pub fn display_name(&self) -> String {
        match self.kind {
            Kind::Constraint => format!(
                "{} on {}",
                quote_ident(&self.name),
                qualified(&self.schema, &self.table)
            ),
            _ => qualified(&self.schema, &self.name),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum ChangeKind {
    Added,
    Dropped,
    Changed,
}

impl ChangeKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ChangeKind::Added => "added",
            ChangeKind::Dropped => "dropped",
            ChangeKind::Changed => "changed",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub change: ChangeKind,
    pub before: Option<SchemaObject>,
    pub after: Option<SchemaObject>,
}

impl Change {
    pub fn object(&self) -> &SchemaObject {
        self.after
            .as_ref()
            .or(self.before.as_ref())
            .expect("a change has a side")
    }
}

/// What was added, dropped or changed (definition or validity) between `baseline` and `now`,
/// ordered by kind, schema, table and name.
pub fn diff(baseline: &[SchemaObject], now: &[SchemaObject]) -> Vec<Change> {
    let before: BTreeMap<_, _> = baseline.iter().map(|o| (o.key(), o)).collect();
    let after: BTreeMap<_, _> = now.iter().map(|o| (o.key(), o)).collect();
    let mut keys: Vec<_> = before.keys().chain(after.keys()).cloned().collect();
    keys.sort();
    keys.dedup();
    keys.into_iter()
        .filter_map(|k| match (before.get(&k), after.get(&k)) {
            (Some(b), None) => Some(Change {
                change: ChangeKind::Dropped,
                before: Some((*b).clone()),
                after: None,
            }),
            (None, Some(a)) => Some(Change {
                change: ChangeKind::Added,
                before: None,
                after: Some((*a).clone()),
            }),
            // Whether an object is a partition's copy is not compared: a partition detached (or
            // attached) since the baseline keeps the same index and constraints.
            (Some(b), Some(a)) if b.definition != a.definition || b.valid != a.valid => {
                Some(Change {
                    change: ChangeKind::Changed,
                    before: Some((*b).clone()),
                    after: Some((*a).clone()),
                })
            }
            _ => None,
        })
        .collect()
}

/// pg_get_indexdef's `CREATE [UNIQUE] INDEX name ON ...` as a concurrent build. An index of a
/// partitioned table cannot be built concurrently; pg_get_indexdef prints it `ON ONLY` the
/// parent, which would leave it invalid with no index on any partition, so it is re-created on
/// the parent as a whole (PostgreSQL then builds or attaches each partition's index).
pub fn concurrent_index_definition(definition: &str, partitioned: bool) -> String {
    if partitioned {
        return whole_partitioned_index(definition);
    }
    for prefix in ["CREATE UNIQUE INDEX ", "CREATE INDEX "] {
        if let Some(rest) = definition.strip_prefix(prefix) {
            return format!("{prefix}CONCURRENTLY {rest}");
        }
    }
    definition.to_string()
}

/// The one statement that rebuilds a constraint's index: the index cannot be dropped by itself
/// (2BP01), and dropping and adding the constraint in one ALTER TABLE never leaves the table
/// without it between two statements. `table` and `name` come quoted; `definition` is
/// pg_get_constraintdef's.
pub fn readd_constraint(table: &str, name: &str, definition: &str) -> String {
    format!("ALTER TABLE {table} DROP CONSTRAINT {name}, ADD CONSTRAINT {name} {definition}")
}

/// Where `pattern` first occurs in `text` at or after `from`, outside double-quoted identifiers.
fn find_unquoted(text: &str, pattern: &str, from: usize) -> Option<usize> {
    let mut quoted = false;
    for (i, c) in text.char_indices() {
        if c == '"' {
            quoted = !quoted;
        } else if !quoted && i >= from && text[i..].starts_with(pattern) {
            return Some(i);
        }
    }
    None
}

/// `CREATE INDEX name ON ONLY parent ...` as `CREATE INDEX name ON parent ...`: the first ` ON
/// ONLY ` outside double quotes is pg_get_indexdef's own.
fn whole_partitioned_index(definition: &str) -> String {
    match find_unquoted(definition, " ON ONLY ", 0) {
        Some(i) => format!("{} ON {}", &definition[..i], &definition[i + 9..]),
        None => definition.to_string(),
    }
}

/// The name suggested for a partition's copy of `index`: `partition_index`, cut to PostgreSQL's
/// 63 bytes on a character boundary.
pub fn partition_index_name(partition: &str, index: &str) -> String {
    let mut name = format!("{partition}_{index}");
    while name.len() > 63 {
        name.pop();
    }
    name
}

/// The parent index's pg_get_indexdef rewritten to build the same index on one partition:
/// `CREATE [UNIQUE] INDEX [CONCURRENTLY] new_name ON partition USING ...`. `new_name` and
/// `partition` come quoted. A leaf partition is built concurrently; a partition that is itself
/// partitioned cannot be.
pub fn partition_index_definition(
    parent_definition: &str,
    new_name: &str,
    partition: &str,
    leaf: bool,
) -> String {
    let head = if parent_definition.starts_with("CREATE UNIQUE INDEX ") {
        "CREATE UNIQUE INDEX"
    } else {
        "CREATE INDEX"
    };
    let on = find_unquoted(parent_definition, " ON ", 0).unwrap_or(0);
    let using = find_unquoted(parent_definition, " USING ", on).unwrap_or(parent_definition.len());
    let concurrently = if leaf { " CONCURRENTLY" } else { "" };
    format!(
        "{head}{concurrently} {new_name} ON {partition}{}",
        &parent_definition[using..]
    )
}

fn drop_index(o: &SchemaObject) -> String {
    if o.partitioned {
        format!("DROP INDEX IF EXISTS {}", qualified(&o.schema, &o.name))
    } else {
        drop_index_statement(&o.schema, &o.name)
    }
}

fn drop_constraint(o: &SchemaObject) -> String {
    format!(
        "ALTER TABLE {} DROP CONSTRAINT IF EXISTS {}",
        qualified(&o.schema, &o.table),
        quote_ident(&o.name)
    )
}

fn add_constraint(o: &SchemaObject) -> String {
    format!(
        "ALTER TABLE {} ADD CONSTRAINT {} {}",
        qualified(&o.schema, &o.table),
        quote_ident(&o.name),
        o.definition
    )
}

/// Constraints that others may depend on go first when adding and last when dropping: a foreign
/// key needs the referenced table's primary key or unique constraint.
fn add_rank(o: &SchemaObject) -> u8 {
    match o.contype {
        Some('p') => 0,
        Some('u') | Some('x') => 1,
        Some('c') => 2,
        _ => 3,
    }
}

/// The statements that bring indexes and constraints back to the baseline, one per element, in
/// this order: drop added or changed foreign keys, then other added or changed constraints, then
/// added or changed indexes; recreate dropped or changed indexes, then constraints (primary and
/// unique keys before the foreign keys that reference them). `table_exists` says whether an
/// object's table is still there: objects that went with their table are not recreated.
/// Materialized views are reported by `diff` but not rolled back. Partitions' copies are left to
/// their parent's statement (see [`SchemaObject::inherited`]).
pub fn rollback(changes: &[Change], table_exists: impl Fn(&str, &str) -> bool) -> Vec<String> {
    let removed: Vec<&SchemaObject> = changes
        .iter()
        .filter(|c| c.change != ChangeKind::Dropped)
        .filter_map(|c| c.after.as_ref())
        .filter(|o| !o.inherited)
        .collect();
    let restored: Vec<&SchemaObject> = changes
        .iter()
        .filter(|c| c.change != ChangeKind::Added)
        .filter_map(|c| c.before.as_ref())
        .filter(|o| !o.inherited)
        .filter(|o| table_exists(&o.schema, &o.table))
        .collect();

    let mut drop_constraints: Vec<&SchemaObject> = removed
        .iter()
        .copied()
        .filter(|o| o.kind == Kind::Constraint)
        .collect();
    drop_constraints.sort_by_key(|o| std::cmp::Reverse(add_rank(o)));
    let mut add_constraints: Vec<&SchemaObject> = restored
        .iter()
        .copied()
        .filter(|o| o.kind == Kind::Constraint)
        .collect();
    add_constraints.sort_by_key(|o| add_rank(o));

    let mut out = Vec::new();
    out.extend(drop_constraints.into_iter().map(drop_constraint));
    out.extend(
        removed
            .iter()
            .filter(|o| o.kind == Kind::Index)
            .map(|o| drop_index(o)),
    );
    out.extend(
        restored
            .iter()
            .filter(|o| o.kind == Kind::Index)
            .map(|o| concurrent_index_definition(&o.definition, o.partitioned)),
    );
    out.extend(add_constraints.into_iter().map(add_constraint));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn index(name: &str, def: &str) -> SchemaObject {
        SchemaObject {
            kind: Kind::Index,
            schema: "App".into(),
            table: "Scan".into(),
            name: name.into(),
            definition: def.into(),
            valid: true,
            contype: None,
            partitioned: false,
            inherited: false,
        }
    }

    fn constraint(name: &str, contype: char, def: &str) -> SchemaObject {
        SchemaObject {
            kind: Kind::Constraint,
            contype: Some(contype),
            ..index(name, def)
        }
    }

    #[test]
    fn diff_reports_added_dropped_and_changed() {
        let base = vec![
            index("a", "CREATE INDEX a ON \"App\".\"Scan\" USING btree (x)"),
            index("b", "B"),
        ];
        let mut changed = index("b", "B");
        changed.valid = false;
        let now = vec![changed, index("c", "C")];
        let d = diff(&base, &now);
        let summary: Vec<(ChangeKind, String)> = d
            .iter()
            .map(|c| (c.change, c.object().name.clone()))
            .collect();
        assert_eq!(
            summary,
            vec![
                (ChangeKind::Dropped, "a".into()),
                (ChangeKind::Changed, "b".into()),
                (ChangeKind::Added, "c".into())
            ]
        );
    }

    #[test]
    fn identical_snapshots_have_no_diff() {
        let base = vec![
            index("a", "A"),
            constraint("fk", 'f', "FOREIGN KEY (x) REFERENCES t(id)"),
        ];
        assert!(diff(&base, &base.clone()).is_empty());
    }

    #[test]
    fn constraints_with_the_same_name_on_different_tables_are_different_objects() {
        let a = constraint("check_positive", 'c', "CHECK (x > 0)");
        let mut b = a.clone();
        b.table = "Other".into();
        // Dropping the one on "Other" is one change, on that table, not a change to `a`.
        let d = diff(&[a.clone(), b], &[a]);
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].change, ChangeKind::Dropped);
        assert_eq!(d[0].object().table, "Other");
    }

    #[test]
    fn rollback_drops_before_it_creates_and_orders_keys_before_foreign_keys() {
        let base = vec![
            index(
                "old_idx",
                "CREATE UNIQUE INDEX old_idx ON \"App\".\"Scan\" USING btree (x)",
            ),
            constraint("Scan_pkey", 'p', "PRIMARY KEY (id)"),
            constraint(
                "Scan_user_fk",
                'f',
                "FOREIGN KEY (\"userId\") REFERENCES \"App\".\"User\"(id)",
            ),
        ];
        let now = vec![
            index(
                "new_idx",
                "CREATE INDEX new_idx ON \"App\".\"Scan\" USING btree (y)",
            ),
            constraint("Scan_x_key", 'u', "UNIQUE (x)"),
            constraint(
                "Scan_other_fk",
                'f',
                "FOREIGN KEY (x) REFERENCES \"App\".\"Other\"(x)",
            ),
        ];
        let ddl = rollback(&diff(&base, &now), |_, _| true);
        assert_eq!(
            ddl,
            vec![
                "ALTER TABLE \"App\".\"Scan\" DROP CONSTRAINT IF EXISTS \"Scan_other_fk\"",
                "ALTER TABLE \"App\".\"Scan\" DROP CONSTRAINT IF EXISTS \"Scan_x_key\"",
                "DROP INDEX CONCURRENTLY IF EXISTS \"App\".\"new_idx\"",
                "CREATE UNIQUE INDEX CONCURRENTLY old_idx ON \"App\".\"Scan\" USING btree (x)",
                "ALTER TABLE \"App\".\"Scan\" ADD CONSTRAINT \"Scan_pkey\" PRIMARY KEY (id)",
                "ALTER TABLE \"App\".\"Scan\" ADD CONSTRAINT \"Scan_user_fk\" FOREIGN KEY (\"userId\") REFERENCES \"App\".\"User\"(id)",
            ]
        );
    }

    #[test]
    fn a_changed_index_is_dropped_then_rebuilt() {
        let base = vec![index(
            "i",
            "CREATE INDEX i ON \"App\".\"Scan\" USING btree (x)",
        )];
        let mut broken = base[0].clone();
        broken.valid = false;
        let ddl = rollback(&diff(&base, &[broken]), |_, _| true);
        assert_eq!(
            ddl,
            vec![
                "DROP INDEX CONCURRENTLY IF EXISTS \"App\".\"i\"",
                "CREATE INDEX CONCURRENTLY i ON \"App\".\"Scan\" USING btree (x)"
            ]
        );
    }

    #[test]
    fn objects_of_dropped_tables_and_partitioned_indexes_are_handled() {
        let base = vec![index(
            "gone",
            "CREATE INDEX gone ON \"App\".\"Scan\" USING btree (x)",
        )];
        assert!(rollback(&diff(&base, &[]), |_, _| false).is_empty());
        let mut part = index(
            "p",
            "CREATE INDEX p ON ONLY \"App\".\"Scan\" USING btree (x)",
        );
        part.partitioned = true;
        let ddl = rollback(&diff(&[], &[part.clone()]), |_, _| true);
        assert_eq!(ddl, vec!["DROP INDEX IF EXISTS \"App\".\"p\""]);
        let ddl = rollback(&diff(&[part], &[]), |_, _| true);
        assert_eq!(
            ddl,
            vec!["CREATE INDEX p ON \"App\".\"Scan\" USING btree (x)"]
        );
    }

    #[test]
    fn a_partitioned_index_named_on_only_keeps_its_name() {
        assert_eq!(
            whole_partitioned_index(
                "CREATE UNIQUE INDEX \"a ON ONLY b\" ON ONLY s.t USING btree (x)"
            ),
            "CREATE UNIQUE INDEX \"a ON ONLY b\" ON s.t USING btree (x)"
        );
    }

    #[test]
    fn an_exclusion_constraints_index_is_rebuilt_by_re_adding_the_constraint() {
        assert_eq!(
            readd_constraint(
                "app.\"Booking\"",
                "\"Booking_no_overlap\"",
                "EXCLUDE USING gist (during WITH &&)"
            ),
            "ALTER TABLE app.\"Booking\" DROP CONSTRAINT \"Booking_no_overlap\", \
             ADD CONSTRAINT \"Booking_no_overlap\" EXCLUDE USING gist (during WITH &&)"
        );
    }

    #[test]
    fn a_partition_gets_the_parents_index_definition_under_its_own_name() {
        let def = "CREATE UNIQUE INDEX \"Ev_key\" ON ONLY app.\"Ev\" USING btree (\"userId\", at) WHERE (at IS NOT NULL)";
        assert_eq!(
            partition_index_definition(def, "\"Ev_2024_Ev_key\"", "app.\"Ev_2024\"", true),
            "CREATE UNIQUE INDEX CONCURRENTLY \"Ev_2024_Ev_key\" ON app.\"Ev_2024\" USING btree (\"userId\", at) WHERE (at IS NOT NULL)"
        );
        assert_eq!(
            partition_index_name(&"p".repeat(40), &"i".repeat(40)).len(),
            63
        );
    }

    #[test]
    fn a_detached_partitions_copies_are_unchanged_and_copies_are_left_to_their_parent() {
        let mut copy = index(
            "t_2024_x_idx",
            "CREATE INDEX t_2024_x_idx ON \"App\".t_2024 USING btree (x)",
        );
        copy.inherited = true;
        let mut detached = copy.clone();
        detached.inherited = false;
        assert!(diff(&[copy.clone()], &[detached]).is_empty());
        // The parent's index was dropped with its copies: only the parent is re-created.
        let mut parent = index(
            "t_x_idx",
            "CREATE INDEX t_x_idx ON ONLY \"App\".t USING btree (x)",
        );
        parent.partitioned = true;
        let ddl = rollback(&diff(&[parent.clone(), copy.clone()], &[]), |_, _| true);
        assert_eq!(
            ddl,
            vec!["CREATE INDEX t_x_idx ON \"App\".t USING btree (x)"]
        );
        // Added with copies: only the parent is dropped.
        let ddl = rollback(&diff(&[], &[parent, copy]), |_, _| true);
        assert_eq!(ddl, vec!["DROP INDEX IF EXISTS \"App\".\"t_x_idx\""]);
    }
}
