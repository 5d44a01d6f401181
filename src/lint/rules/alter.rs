//! The ALTER TABLE rules: added columns and their defaults, type changes, SET NOT NULL, added
//! and validated constraints, partitions attached and detached.

use super::{Session, hit, is_existing};
use crate::lint::tree::{self, node};
use crate::lint::{Hit, Statement, Target, string_list, text_of, written_name};
use crate::own_sql::{self, col, quote_ident};
use pgrx::prelude::*;
use runbook_core::lint::{self as lc, LockMode, Work};
use runbook_core::status::Status;

impl Session {
    #[allow(non_upper_case_globals)]
    pub(super) fn alter_table(
        &mut self,
        stmt: &Statement,
        hits: &mut Vec<Hit>,
        exclusive: &mut Vec<Target>,
    ) {
        let a = stmt.node.cast::<pg_sys::AlterTableStmt>();
        let (rv, cmds, objtype) = (node(a).relation, node(a).cmds, node(a).objtype);
        if objtype != pg_sys::ObjectType::OBJECT_TABLE {
            return;
        }
        let t = self.target(rv);
        let cmds = tree::list::<pg_sys::AlterTableCmd>(cmds);
        let single = cmds.len() == 1;
        let mut strongest = LockMode::AccessShare;
        for cmd in cmds.iter_ptr() {
            let (sub, name, def) = (node(cmd).subtype, text_of(node(cmd).name), node(cmd).def);
            use pg_sys::AlterTableType::*;
            let lock = match sub {
                AT_AddColumn => {
                    hits.extend(self.add_column(&t, def.cast()));
                    LockMode::AccessExclusive
                }
                AT_AlterColumnType => {
                    hits.push(self.alter_type(&t, &name, def.cast()));
                    LockMode::AccessExclusive
                }
                AT_SetNotNull => {
                    hits.push(self.set_not_null(&t, &name));
                    LockMode::AccessExclusive
                }
                AT_AddConstraint => self.add_constraint(&t, def.cast(), single, stmt, hits),
                AT_ValidateConstraint => {
                    hits.push(self.validate(&t, &name, stmt));
                    LockMode::ShareUpdateExclusive
                }
                AT_DropColumn => {
                    hits.extend(self.used_by_view(&t, Some(&name), "dropped"));
                    LockMode::AccessExclusive
                }
                AT_AttachPartition => {
                    hits.push(self.attach(&t, def.cast()));
                    LockMode::ShareUpdateExclusive
                }
                AT_DetachPartition => {
                    let (h, lock) = self.detach(&t, def.cast(), stmt);
                    hits.push(h);
                    lock
                }
                AT_ColumnDefault | AT_SetStatistics | AT_SetOptions | AT_ResetOptions
                | AT_SetStorage | AT_ClusterOn | AT_DropCluster | AT_SetRelOptions
                | AT_ResetRelOptions => LockMode::ShareUpdateExclusive,
                _ => LockMode::AccessExclusive,
            };
            strongest = strongest.max(lock);
        }
        if strongest == LockMode::AccessExclusive && is_existing(&t) {
            exclusive.push(t);
        }
    }

    fn add_column(&self, t: &Target, def: *mut pg_sys::ColumnDef) -> Option<Hit> {
        let (colname, type_name, constraints) = (
            text_of(node(def).colname),
            node(def).typeName,
            node(def).constraints,
        );
        // SAFETY: the column's TypeName from the parse tree; TypeNameToString only prints it
        // into a new palloc'd string (no catalog lookup).
        let type_text = unsafe { text_of(pg_sys::TypeNameToString(type_name)) };
        let mut rewrite: Option<String> = None;
        let mut default_expr: Option<*mut pg_sys::Node> = None;
        if [
            "serial",
            "bigserial",
            "smallserial",
            "serial4",
            "serial8",
            "serial2",
        ]
        .contains(&type_text.as_str())
        {
            rewrite = Some(format!(
                "a {type_text} column fills every row from a sequence"
            ));
        }
        let list = tree::list::<pg_sys::Constraint>(constraints);
        for c in list.iter_ptr() {
            match node(c).contype {
                pg_sys::ConstrType::CONSTR_DEFAULT => default_expr = Some(node(c).raw_expr),
                pg_sys::ConstrType::CONSTR_IDENTITY => {
                    rewrite = Some("an identity column fills every row from a sequence".into())
                }
                pg_sys::ConstrType::CONSTR_GENERATED => {
                    rewrite = Some("a stored generated column is computed for every row".into())
                }
                _ => {}
            }
        }
        let mut safe = None;
        if let Some(expr) = default_expr {
            match volatile_default(expr) {
                Ok((true, text)) => {
                    rewrite = Some(format!(
                        "the default {text} is volatile: evaluated for every row"
                    ));
                    safe = Some(format!(
                        "ALTER TABLE {0} ADD COLUMN {1} {2}; ALTER TABLE {0} ALTER COLUMN {1} SET DEFAULT {3}; -- then backfill existing rows in batches",
                        t.name,
                        quote_ident(&colname),
                        type_text,
                        text
                    ));
                }
                Ok((false, text)) => {
                    let mut h = hit(
                        "volatile_default",
                        Status::Pass,
                        LockMode::AccessExclusive,
                        t,
                        Work::None,
                    );
                    h.detail = format!(
                        "the default {text} is not volatile: stored once in the catalog, no rewrite"
                    );
                    return Some(h);
                }
                Err(message) => {
                    let mut h = hit(
                        "volatile_default",
                        Status::Warn,
                        LockMode::AccessExclusive,
                        t,
                        Work::None,
                    );
                    h.detail = format!("the default could not be judged: {message}");
                    return Some(h);
                }
            }
        }
        let why = rewrite?;
        let mut h = self.sized(
            hit(
                "volatile_default",
                Status::Pass,
                LockMode::AccessExclusive,
                t,
                Work::Rewrite,
            ),
            &format!("{why}: the table is rewritten under ACCESS EXCLUSIVE"),
        );
        h.safe_form = safe.filter(|_| is_existing(t));
        Some(h)
    }

    fn alter_type(&self, t: &Target, column: &str, def: *mut pg_sys::ColumnDef) -> Hit {
        let (type_name, using) = (node(def).typeName, node(def).raw_default);
        let mut h = hit(
            "type_change_rewrite",
            Status::Pass,
            LockMode::AccessExclusive,
            t,
            Work::Rewrite,
        );
        let Some(oid) = t.oid else {
            h.detail = "the table is not in the catalog yet: nothing to rewrite".into();
            h.work = Work::None;
            return h;
        };
        let new = own_sql::in_subtransaction(move || {
            let (mut typid, mut typmod) = (pg_sys::InvalidOid, -1);
            // SAFETY: type_name is the TypeName of the parse tree (read-only here) and the two
            // outputs are locals; it resolves the name through the caller's search_path, and an
            // unknown type is an ERROR caught by the subtransaction.
            unsafe {
                pg_sys::typenameTypeIdAndMod(
                    std::ptr::null_mut(),
                    type_name,
                    &mut typid,
                    &mut typmod,
                )
            };
            (typid, typmod)
        });
        let old = own_sql::select(
            "SELECT a.atttypid, a.atttypmod FROM pg_catalog.pg_attribute a \
             WHERE a.attrelid OPERATOR(pg_catalog.=) $1 AND a.attname OPERATOR(pg_catalog.=) $2 AND NOT a.attisdropped",
            &[oid.into(), column.into()],
            |r| {
                (
                    col::<pg_sys::Oid>(r, 1).unwrap_or(pg_sys::InvalidOid),
                    col::<i32>(r, 2).unwrap_or(-1),
                )
            },
        );
        let ((new_oid, new_mod), (old_oid, old_mod)) = match (new, old.first()) {
            (Ok(n), Some(o)) => (n, *o),
            (Err(message), _) => {
                h.status = Status::Warn;
                h.detail = format!("the new type could not be resolved: {message}");
                return h;
            }
            (_, None) => {
                h.status = Status::Warn;
                h.detail = format!("column {} is not in the catalog", quote_ident(column));
                return h;
            }
        };
        let typname = |oid: pg_sys::Oid| {
            own_sql::select_one(
                "SELECT typname::pg_catalog.text FROM pg_catalog.pg_type WHERE oid OPERATOR(pg_catalog.=) $1",
                &[oid.into()],
                |r| col::<String>(r, 1).unwrap_or_default(),
            )
        };
        // SAFETY: format_type_with_typemod prints any type OID (an unknown one as "???") into a
        // new palloc'd string; it only reads the catalog.
        let format =
            |oid, typmod| unsafe { text_of(pg_sys::format_type_with_typemod(oid, typmod)) };
        let old_t = lc::ColumnType {
            name: typname(old_oid),
            typmod: old_mod,
        };
        let new_t = lc::ColumnType {
            name: typname(new_oid),
            typmod: new_mod,
        };
        // SAFETY: a catalog lookup on two type OIDs, by value; it only reads the catalog.
        let coercible = unsafe { pg_sys::IsBinaryCoercible(old_oid, new_oid) };
        let change = format!(
            "{} to {}",
            format(old_oid, old_mod),
            format(new_oid, new_mod)
        );
        if !lc::type_change_rewrites(&old_t, &new_t, coercible, !using.is_null()) {
            h.work = Work::None;
            h.detail = format!("{change} is a catalog change: no rewrite");
            return h;
        }
        let mut h = self.sized(
            h,
            &format!("{change} rewrites the table and its indexes under ACCESS EXCLUSIVE"),
        );
        h.detail +=
            "; instead add a new column, backfill it in batches, and switch over in a later deploy";
        h
    }

    fn set_not_null(&self, t: &Target, column: &str) -> Hit {
        let mut h = hit(
            "set_not_null",
            Status::Pass,
            LockMode::AccessExclusive,
            t,
            Work::Scan,
        );
        let from_migration = self
            .not_null_checks
            .iter()
            .any(|(table, c, valid, _)| *table == t.name && c == column && *valid);
        let (already, checked) = match t.oid {
            Some(oid) => own_sql::select(
                "SELECT a.attnotnull, EXISTS (SELECT 1 FROM pg_catalog.pg_constraint con \
                   WHERE con.conrelid OPERATOR(pg_catalog.=) $1 AND con.contype OPERATOR(pg_catalog.=) 'c' AND con.convalidated \
                     AND pg_catalog.pg_get_constraintdef(con.oid) OPERATOR(pg_catalog.=) pg_catalog.format('CHECK ((%I IS NOT NULL))', $2::pg_catalog.text)) \
                 FROM pg_catalog.pg_attribute a WHERE a.attrelid OPERATOR(pg_catalog.=) $1 AND a.attname OPERATOR(pg_catalog.=) $2",
                &[oid.into(), column.into()],
                |r| (col::<bool>(r, 1).unwrap_or(false), col::<bool>(r, 2).unwrap_or(false)),
            )
            .into_iter()
            .next()
            .unwrap_or((false, false)),
            None => (false, false),
        };
        if already || checked || from_migration {
            h.work = Work::None;
            h.detail = if already {
                "the column is already NOT NULL".into()
            } else {
                "a validated CHECK (column IS NOT NULL) proves it: no scan".into()
            };
            return h;
        }
        let mut h = self.sized(
            h,
            "SET NOT NULL reads the whole table under ACCESS EXCLUSIVE",
        );
        if is_existing(t) {
            let table = &t.relname;
            let con = quote_ident(&format!("{table}_{column}_not_null"));
            let c = quote_ident(column);
            h.safe_form = Some(format!(
                "ALTER TABLE {0} ADD CONSTRAINT {1} CHECK ({2} IS NOT NULL) NOT VALID; ALTER TABLE {0} VALIDATE CONSTRAINT {1}; ALTER TABLE {0} ALTER COLUMN {2} SET NOT NULL; ALTER TABLE {0} DROP CONSTRAINT {1};",
                t.name, con, c
            ));
        }
        h
    }

    fn add_constraint(
        &mut self,
        t: &Target,
        c: *mut pg_sys::Constraint,
        single: bool,
        stmt: &Statement,
        hits: &mut Vec<Hit>,
    ) -> LockMode {
        let (kind, name, not_valid, index) = {
            let c = node(c);
            (
                c.contype,
                text_of(c.conname),
                c.skip_validation,
                c.indexname,
            )
        };
        use pg_sys::ConstrType::*;
        match kind {
            CONSTR_FOREIGN | CONSTR_CHECK => {
                let (rule, lock, suffix) = if kind == CONSTR_FOREIGN {
                    ("foreign_key_not_valid", LockMode::ShareRowExclusive, "fkey")
                } else {
                    ("check_not_valid", LockMode::AccessExclusive, "check")
                };
                let columns = {
                    if kind == CONSTR_FOREIGN {
                        string_list(node(c).fk_attrs)
                    } else {
                        Vec::new()
                    }
                };
                let table = t.relname.clone();
                let name = if name.is_empty() {
                    lc::default_constraint_name(&table, &columns, suffix)
                } else {
                    name
                };
                let checked = if kind == CONSTR_CHECK {
                    not_null_column(node(c).raw_expr)
                } else {
                    None
                };
                if let Some(column) = checked {
                    self.not_null_checks
                        .push((t.name.clone(), column, !not_valid, name.clone()));
                }
                if not_valid {
                    self.not_valid_in_transaction.push((t.name.clone(), name));
                    let mut h = hit(rule, Status::Pass, lock, t, Work::None);
                    h.detail = "NOT VALID: existing rows are not checked now; VALIDATE CONSTRAINT later, in its own transaction".into();
                    hits.push(h);
                    return lock;
                }
                let mut h = self.sized(
                    hit(rule, Status::Pass, lock, t, Work::Scan),
                    &format!(
                        "the constraint is checked against every row under {}{}",
                        lock.as_str(),
                        if kind == CONSTR_FOREIGN {
                            " (taken on the referenced table too)"
                        } else {
                            ""
                        }
                    ),
                );
                if single && is_existing(t) {
                    h.safe_form = Some(format!(
                        "{} NOT VALID; ALTER TABLE {} VALIDATE CONSTRAINT {};",
                        lc::trim_statement(&stmt.text),
                        t.name,
                        quote_ident(&name)
                    ));
                }
                hits.push(h);
                lock
            }
            CONSTR_PRIMARY | CONSTR_UNIQUE | CONSTR_EXCLUSION => {
                let lock = LockMode::AccessExclusive;
                if !index.is_null() {
                    let mut h = hit("unique_without_index", Status::Pass, lock, t, Work::None);
                    h.detail =
                        "USING INDEX: the prebuilt index becomes the constraint, no scan".into();
                    hits.push(h);
                    return lock;
                }
                let mut h = self.sized(
                    hit("unique_without_index", Status::Pass, lock, t, Work::Scan),
                    "the constraint's index is built under ACCESS EXCLUSIVE",
                );
                let columns = string_list(node(c).keys);
                if kind != CONSTR_EXCLUSION
                    && is_existing(t)
                    && !t.partitioned
                    && !columns.is_empty()
                {
                    let table = t.relname.clone();
                    let suffix = if kind == CONSTR_PRIMARY {
                        "pkey"
                    } else {
                        "key"
                    };
                    let name = if name.is_empty() {
                        if kind == CONSTR_PRIMARY {
                            format!("{table}_pkey")
                        } else {
                            lc::default_constraint_name(&table, &columns, suffix)
                        }
                    } else {
                        name
                    };
                    let word = if kind == CONSTR_PRIMARY {
                        "PRIMARY KEY"
                    } else {
                        "UNIQUE"
                    };
                    let cols: Vec<String> = columns.iter().map(|c| quote_ident(c)).collect();
                    h.safe_form = Some(format!(
                        "CREATE UNIQUE INDEX CONCURRENTLY {name_q} ON {table_q} ({cols}); ALTER TABLE {table_q} ADD CONSTRAINT {name_q} {word} USING INDEX {name_q};",
                        name_q = quote_ident(&name),
                        table_q = t.name,
                        cols = cols.join(", ")
                    ));
                }
                hits.push(h);
                lock
            }
            _ => LockMode::AccessExclusive,
        }
    }

    fn validate(&mut self, t: &Target, name: &str, stmt: &Statement) -> Hit {
        for check in self.not_null_checks.iter_mut() {
            if check.0 == t.name && check.3 == name {
                check.2 = true;
            }
        }
        let same = self
            .not_valid_in_transaction
            .iter()
            .any(|(table, con)| *table == t.name && con == name);
        let mut h = hit(
            "validate_in_same_transaction",
            Status::Pass,
            LockMode::ShareUpdateExclusive,
            t,
            Work::Scan,
        );
        if same && self.in_transaction {
            h.status = Status::Fail;
            h.detail = "VALIDATE in the transaction that added the constraint NOT VALID: the ADD's lock is held while every row is read".into();
            h.safe_form = Some(format!("COMMIT; {};", lc::trim_statement(&stmt.text)));
        } else {
            h.detail = "VALIDATE CONSTRAINT reads the table under SHARE UPDATE EXCLUSIVE: reads and writes go on".into();
        }
        h
    }

    fn attach(&mut self, parent: &Target, cmd: *mut pg_sys::PartitionCmd) -> Hit {
        let part = self.target(node(cmd).name);
        let mut h = self.sized(
            hit("attach_partition", Status::Pass, LockMode::AccessExclusive, &part, Work::Scan),
            &format!(
                "ATTACH PARTITION takes SHARE UPDATE EXCLUSIVE on {} and ACCESS EXCLUSIVE on the partition, which it reads to check the bounds",
                parent.name
            ),
        );
        if is_existing(&part) {
            h.detail += "; a validated CHECK constraint matching the bounds (added NOT VALID, then VALIDATE) lets ATTACH skip the scan";
        }
        h
    }

    fn detach(
        &self,
        parent: &Target,
        cmd: *mut pg_sys::PartitionCmd,
        stmt: &Statement,
    ) -> (Hit, LockMode) {
        if node(cmd).concurrent {
            let lock = LockMode::ShareUpdateExclusive;
            return (
                self.concurrently("detach_partition_not_concurrent", lock, parent, &stmt.text),
                lock,
            );
        }
        let part = written_name(node(cmd).name);
        let lock = LockMode::AccessExclusive;
        let mut h = self.sized(
            hit("detach_partition_not_concurrent", Status::Pass, lock, parent, Work::None),
            "DETACH PARTITION without CONCURRENTLY takes ACCESS EXCLUSIVE on the whole partitioned table",
        );
        if is_existing(parent) {
            h.safe_form = Some(format!(
                "ALTER TABLE {} DETACH PARTITION {} CONCURRENTLY",
                parent.name, part
            ));
        }
        (h, lock)
    }
}

/// The column of a `CHECK (column IS NOT NULL)` expression.
fn not_null_column(expr: *mut pg_sys::Node) -> Option<String> {
    let n = tree::cast::<pg_sys::NullTest>(expr)?;
    if n.nulltesttype != pg_sys::NullTestType::IS_NOT_NULL {
        return None;
    }
    let raw = tree::cast::<pg_sys::ColumnRef>(n.arg.cast::<pg_sys::Node>())?.fields;
    let fields = string_list(raw);
    // One plain name: `t.*` (an A_Star) or a qualified column is not this pattern.
    let one = fields.len() == 1 && tree::list::<pg_sys::Node>(raw).len() == 1;
    one.then(|| fields[0].clone())
}

/// Whether a column default is volatile, and its text as PostgreSQL deparses it: the raw
/// expression is transformed as ALTER TABLE ... ADD COLUMN would (functions resolved through the
/// caller's search_path), in a subtransaction so an unknown function is an answer, not an ERROR.
fn volatile_default(expr: *mut pg_sys::Node) -> Result<(bool, String), String> {
    let analysed = tree::analyse_expression(expr, pg_sys::ParseExprKind::EXPR_KIND_COLUMN_DEFAULT)?;
    Ok((analysed.volatile, analysed.text))
}
