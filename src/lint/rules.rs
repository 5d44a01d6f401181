//! The lint rules, applied statement by statement: the raw parse tree says what a statement does,
//! the catalog says how big its table is, runbook_core::lint judges the two. `Session` carries
//! what earlier statements changed (tables created, lock_timeout set, transaction blocks, NOT VALID
//! constraints, enum values added).

use super::{
    Hit, Statement, Target, describe, index_table, relation_name, relation_oid, string_list,
    text_of, written_name,
};
use crate::catalog::{self, col, quote_ident};
use pgrx::prelude::*;
use runbook_core::lint::{self as lc, LockMode, TableState, Work};
use runbook_core::status::Status;

pub struct Session {
    limits: lc::Limits,
    in_transaction: bool,
    lock_timeout: bool,
    lock_timeout_local: bool,
    /// (schema as written or '', table) of every CREATE TABLE so far.
    created: Vec<(String, String)>,
    /// (table, constraint) added NOT VALID in the open transaction block.
    not_valid_in_transaction: Vec<(String, String)>,
    /// (table, column, validated) of `CHECK (column IS NOT NULL)` constraints the migration added.
    not_null_checks: Vec<(String, String, bool, String)>,
    /// Enum values added in the open transaction block.
    enum_values: Vec<String>,
    /// Tables already looked up: a migration names the same few tables again and again.
    described: std::collections::HashMap<pg_sys::Oid, Target>,
}

fn hit(rule: &'static str, status: Status, lock: LockMode, target: &Target, work: Work) -> Hit {
    Hit {
        rule,
        status,
        lock: Some(lock),
        target: Some(target.clone()),
        work,
        safe_form: None,
        detail: String::new(),
    }
}

fn is_existing(t: &Target) -> bool {
    matches!(t.state, TableState::Existing { .. })
}

impl Session {
    pub fn new(limits: lc::Limits) -> Self {
        Session {
            limits,
            in_transaction: false,
            lock_timeout: false,
            lock_timeout_local: false,
            created: Vec::new(),
            not_valid_in_transaction: Vec::new(),
            not_null_checks: Vec::new(),
            enum_values: Vec::new(),
            described: std::collections::HashMap::new(),
        }
    }

    /// The table a RangeVar names: created earlier in the migration, in the catalog, or neither.
    fn target(&mut self, rv: *const pg_sys::RangeVar) -> Target {
        // SAFETY: a RangeVar from the parse tree.
        let (schema, rel) = unsafe { (text_of((*rv).schemaname), text_of((*rv).relname)) };
        let created = self
            .created
            .iter()
            .any(|(s, r)| *r == rel && (s.is_empty() || schema.is_empty() || *s == schema));
        if created {
            return Target {
                oid: None,
                name: written_name(rv),
                state: TableState::New,
                partitioned: false,
            };
        }
        match relation_oid(rv) {
            Some(oid) => self
                .described
                .entry(oid)
                .or_insert_with(|| describe(oid))
                .clone(),
            None => Target {
                oid: None,
                name: written_name(rv),
                state: TableState::Missing,
                partitioned: false,
            },
        }
    }

    /// The verdict for work that grows with the table, and why.
    fn sized(&self, mut h: Hit, what: &str) -> Hit {
        let state = h.target.as_ref().map(|t| t.state.clone());
        let (status, why) = lc::judge_size(&state.unwrap_or(TableState::Missing), &self.limits);
        h.status = status;
        h.detail = format!("{what}; {why}");
        h
    }

    fn concurrently(&self, rule: &'static str, lock: LockMode, t: &Target, stmt: &str) -> Hit {
        if self.in_transaction {
            let mut h = hit(
                "concurrently_in_transaction",
                Status::Fail,
                lock,
                t,
                Work::Scan,
            );
            h.detail = "CONCURRENTLY cannot run inside a transaction block: it fails".into();
            h.safe_form = Some(lc::trim_statement(stmt).to_string() + " -- outside BEGIN/COMMIT");
            h
        } else {
            let mut h = hit(rule, Status::Pass, lock, t, Work::Scan);
            h.detail = "CONCURRENTLY: reads and writes go on".into();
            h
        }
    }

    pub fn judge(&mut self, stmt: &Statement) -> Vec<Hit> {
        let mut hits = Vec::new();
        let mut exclusive: Vec<Target> = Vec::new();
        // SAFETY: `node` is a statement node of the raw parse tree; each arm casts it to the
        // struct its tag names.
        let tag = unsafe { (*stmt.node).type_ };
        match tag {
            pg_sys::NodeTag::T_TransactionStmt => self.transaction(stmt.node.cast()),
            pg_sys::NodeTag::T_VariableSetStmt => self.variable_set(stmt.node.cast()),
            pg_sys::NodeTag::T_CreateStmt => {
                let rv = unsafe { (*stmt.node.cast::<pg_sys::CreateStmt>()).relation };
                let (s, r) = unsafe { (text_of((*rv).schemaname), text_of((*rv).relname)) };
                self.created.push((s, r));
            }
            pg_sys::NodeTag::T_IndexStmt => hits.push(self.create_index(stmt)),
            pg_sys::NodeTag::T_DropStmt => self.drop(stmt, &mut hits, &mut exclusive),
            pg_sys::NodeTag::T_AlterTableStmt => self.alter_table(stmt, &mut hits, &mut exclusive),
            pg_sys::NodeTag::T_RenameStmt => self.rename(stmt, &mut hits, &mut exclusive),
            pg_sys::NodeTag::T_VacuumStmt | pg_sys::NodeTag::T_ClusterStmt => {
                self.rewrite_all(stmt, &mut hits)
            }
            pg_sys::NodeTag::T_ReindexStmt => hits.push(self.reindex(stmt)),
            pg_sys::NodeTag::T_LockStmt => self.lock(stmt, &mut hits, &mut exclusive),
            pg_sys::NodeTag::T_AlterEnumStmt => {
                let e = stmt.node.cast::<pg_sys::AlterEnumStmt>();
                let value = unsafe { text_of((*e).newVal) };
                if self.in_transaction && !value.is_empty() {
                    self.enum_values.push(value);
                }
            }
            _ => {}
        }
        self.enum_use(stmt, tag, &mut hits);
        if let Some(t) = exclusive.first() {
            hits.push(self.lock_timeout_rule(t, stmt));
        }
        hits
    }

    fn transaction(&mut self, t: *mut pg_sys::TransactionStmt) {
        use pg_sys::TransactionStmtKind::*;
        match unsafe { (*t).kind } {
            TRANS_STMT_BEGIN | TRANS_STMT_START => self.in_transaction = true,
            TRANS_STMT_COMMIT | TRANS_STMT_ROLLBACK | TRANS_STMT_PREPARE => {
                self.in_transaction = false;
                self.lock_timeout_local = false;
                self.not_valid_in_transaction.clear();
                self.enum_values.clear();
            }
            _ => {}
        }
    }

    /// `SET [LOCAL] lock_timeout = ...`: any value but 0 counts; RESET and DEFAULT clear it.
    fn variable_set(&mut self, v: *mut pg_sys::VariableSetStmt) {
        let (kind, name, args, local) =
            unsafe { ((*v).kind, text_of((*v).name), (*v).args, (*v).is_local) };
        if name != "lock_timeout" && kind != pg_sys::VariableSetKind::VAR_RESET_ALL {
            return;
        }
        let on = kind == pg_sys::VariableSetKind::VAR_SET_VALUE && !is_zero(args);
        if local {
            self.lock_timeout_local = on;
        } else {
            self.lock_timeout = on;
            self.lock_timeout_local &= on;
        }
    }

    fn lock_timeout_rule(&self, t: &Target, stmt: &Statement) -> Hit {
        let mut h = hit(
            "missing_lock_timeout",
            Status::Pass,
            LockMode::AccessExclusive,
            t,
            Work::None,
        );
        if self.lock_timeout || self.lock_timeout_local {
            h.detail = "lock_timeout is set: a blocked ACCESS EXCLUSIVE request gives up instead of queueing everyone behind it".into();
            return h;
        }
        let (status, why) = lc::judge_size(&t.state, &self.limits);
        // The queue forms behind the waiting lock whatever the table's size: any table already
        // in use is at least a WARN.
        h.status = match t.state {
            TableState::Existing { .. } => status.max(Status::Warn),
            _ => status,
        };
        h.detail = format!(
            "no lock_timeout: while this waits for its ACCESS EXCLUSIVE lock, every query on the table queues behind it; {why}"
        );
        h.safe_form = Some(format!(
            "SET lock_timeout = '2s'; {};",
            lc::trim_statement(&stmt.text)
        ));
        h
    }

    fn create_index(&mut self, stmt: &Statement) -> Hit {
        let i = stmt.node.cast::<pg_sys::IndexStmt>();
        let (rv, concurrent) = unsafe { ((*i).relation, (*i).concurrent) };
        let t = self.target(rv);
        if concurrent {
            return self.concurrently(
                "index_not_concurrent",
                LockMode::ShareUpdateExclusive,
                &t,
                &stmt.text,
            );
        }
        let mut h = self.sized(
            hit(
                "index_not_concurrent",
                Status::Pass,
                LockMode::Share,
                &t,
                Work::Scan,
            ),
            "CREATE INDEX without CONCURRENTLY blocks writes while it reads the whole table",
        );
        if t.partitioned {
            h.detail += "; a partitioned table cannot be indexed CONCURRENTLY: build each partition's index CONCURRENTLY, CREATE INDEX ON ONLY the parent, then ALTER INDEX ... ATTACH PARTITION";
        } else if is_existing(&t) {
            h.safe_form =
                lc::insert_after_keyword(lc::trim_statement(&stmt.text), "INDEX", "CONCURRENTLY");
        }
        h
    }

    fn drop(&mut self, stmt: &Statement, hits: &mut Vec<Hit>, exclusive: &mut Vec<Target>) {
        let d = stmt.node.cast::<pg_sys::DropStmt>();
        let (kind, objects, concurrent) =
            unsafe { ((*d).removeType, (*d).objects, (*d).concurrent) };
        let objects = unsafe { pgrx::PgList::<pg_sys::List>::from_pg(objects) };
        for names in objects.iter_ptr() {
            // SAFETY: DROP INDEX/TABLE objects are name lists.
            let rv = unsafe { pg_sys::makeRangeVarFromNameList(names) };
            match kind {
                pg_sys::ObjectType::OBJECT_INDEX => {
                    let index = relation_oid(rv);
                    let table = index.and_then(index_table);
                    let Some(t) = table.map(describe) else {
                        continue;
                    };
                    if concurrent {
                        hits.push(self.concurrently(
                            "drop_index_not_concurrent",
                            LockMode::ShareUpdateExclusive,
                            &t,
                            &stmt.text,
                        ));
                        continue;
                    }
                    let mut h = self.sized(
                        hit(
                            "drop_index_not_concurrent",
                            Status::Pass,
                            LockMode::AccessExclusive,
                            &t,
                            Work::None,
                        ),
                        "DROP INDEX without CONCURRENTLY takes ACCESS EXCLUSIVE on the table",
                    );
                    h.safe_form = index
                        .map(|i| format!("DROP INDEX CONCURRENTLY IF EXISTS {}", relation_name(i)));
                    exclusive.push(t.clone());
                    hits.push(h);
                }
                pg_sys::ObjectType::OBJECT_TABLE => {
                    let t = self.target(rv);
                    if let Some(h) = self.used_by_view(&t, None, "dropped") {
                        hits.push(h);
                    }
                    if is_existing(&t) {
                        exclusive.push(t);
                    }
                }
                _ => {}
            }
        }
    }

    /// Views that depend on a table (or one of its columns): a drop fails (or, with CASCADE, takes
    /// the views along), a rename silently changes what they show under the old name.
    fn used_by_view(&self, t: &Target, column: Option<&str>, what: &str) -> Option<Hit> {
        let oid = t.oid?;
        let views = catalog::select_one(
            "SELECT pg_catalog.string_agg(DISTINCT pg_catalog.format('%I.%I', vn.nspname, v.relname), ', ') \
             FROM pg_catalog.pg_depend d \
             JOIN pg_catalog.pg_rewrite r ON r.oid OPERATOR(pg_catalog.=) d.objid \
             JOIN pg_catalog.pg_class v ON v.oid OPERATOR(pg_catalog.=) r.ev_class \
             JOIN pg_catalog.pg_namespace vn ON vn.oid OPERATOR(pg_catalog.=) v.relnamespace \
             WHERE d.classid OPERATOR(pg_catalog.=) 'pg_catalog.pg_rewrite'::pg_catalog.regclass \
               AND d.refclassid OPERATOR(pg_catalog.=) 'pg_catalog.pg_class'::pg_catalog.regclass \
               AND d.refobjid OPERATOR(pg_catalog.=) $1 AND v.oid OPERATOR(pg_catalog.<>) $1 \
               AND ($2::pg_catalog.text IS NULL OR d.refobjsubid OPERATOR(pg_catalog.=) \
                    (SELECT a.attnum FROM pg_catalog.pg_attribute a \
                     WHERE a.attrelid OPERATOR(pg_catalog.=) $1 AND a.attname OPERATOR(pg_catalog.=) $2))",
            &[oid.into(), column.into()],
            |r| col::<String>(r, 1),
        );
        let object = match column {
            Some(c) => format!("column {} of {}", quote_ident(c), t.name),
            None => t.name.clone(),
        };
        let mut h = hit(
            "used_by_view",
            Status::Pass,
            LockMode::AccessExclusive,
            t,
            Work::None,
        );
        match views {
            Some(v) => {
                h.status = Status::Fail;
                h.detail = format!("{object} is {what} while views use it: {v}");
            }
            None => {
                h.detail = format!(
                    "no view uses {object}; application code that still uses it breaks: change the code first"
                )
            }
        }
        Some(h)
    }

    fn rename(&mut self, stmt: &Statement, hits: &mut Vec<Hit>, exclusive: &mut Vec<Target>) {
        let r = stmt.node.cast::<pg_sys::RenameStmt>();
        let (kind, rv, sub) = unsafe { ((*r).renameType, (*r).relation, text_of((*r).subname)) };
        let column = match kind {
            pg_sys::ObjectType::OBJECT_COLUMN => Some(sub.as_str()),
            pg_sys::ObjectType::OBJECT_TABLE => None,
            _ => return,
        };
        let t = self.target(rv);
        if let Some(h) = self.used_by_view(&t, column, "renamed") {
            hits.push(h);
        }
        if is_existing(&t) {
            exclusive.push(t);
        }
    }

    #[allow(non_upper_case_globals)]
    fn alter_table(&mut self, stmt: &Statement, hits: &mut Vec<Hit>, exclusive: &mut Vec<Target>) {
        let a = stmt.node.cast::<pg_sys::AlterTableStmt>();
        let (rv, cmds, objtype) = unsafe { ((*a).relation, (*a).cmds, (*a).objtype) };
        if objtype != pg_sys::ObjectType::OBJECT_TABLE {
            return;
        }
        let t = self.target(rv);
        let cmds = unsafe { pgrx::PgList::<pg_sys::AlterTableCmd>::from_pg(cmds) };
        let single = cmds.len() == 1;
        let mut strongest = LockMode::AccessShare;
        for cmd in cmds.iter_ptr() {
            let (sub, name, def) = unsafe { ((*cmd).subtype, text_of((*cmd).name), (*cmd).def) };
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
        let (colname, type_name, constraints) =
            unsafe { (text_of((*def).colname), (*def).typeName, (*def).constraints) };
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
        let list = unsafe { pgrx::PgList::<pg_sys::Constraint>::from_pg(constraints) };
        for c in list.iter_ptr() {
            match unsafe { (*c).contype } {
                pg_sys::ConstrType::CONSTR_DEFAULT => default_expr = Some(unsafe { (*c).raw_expr }),
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
        let (type_name, using) = unsafe { ((*def).typeName, (*def).raw_default) };
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
        let new = catalog::in_subtransaction(move || {
            let (mut typid, mut typmod) = (pg_sys::InvalidOid, -1);
            // SAFETY: resolves the TypeName through the caller's search_path; an unknown type is
            // an ERROR caught by the subtransaction.
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
        let old = catalog::select(
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
            catalog::select_one(
                "SELECT typname::pg_catalog.text FROM pg_catalog.pg_type WHERE oid OPERATOR(pg_catalog.=) $1",
                &[oid.into()],
                |r| col::<String>(r, 1).unwrap_or_default(),
            )
        };
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
        // SAFETY: a catalog lookup on two type oids.
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
            Some(oid) => catalog::select(
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
            let table = t.name.rsplit('.').next().unwrap_or("").trim_matches('"');
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
        let (kind, name, not_valid, index) = unsafe {
            (
                (*c).contype,
                text_of((*c).conname),
                (*c).skip_validation,
                (*c).indexname,
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
                let columns = unsafe {
                    if kind == CONSTR_FOREIGN {
                        string_list((*c).fk_attrs)
                    } else {
                        Vec::new()
                    }
                };
                let table = t
                    .name
                    .rsplit('.')
                    .next()
                    .unwrap_or("")
                    .trim_matches('"')
                    .to_string();
                let name = if name.is_empty() {
                    lc::default_constraint_name(&table, &columns, suffix)
                } else {
                    name
                };
                if kind == CONSTR_CHECK {
                    if let Some(column) = unsafe { not_null_column((*c).raw_expr) } {
                        self.not_null_checks.push((
                            t.name.clone(),
                            column,
                            !not_valid,
                            name.clone(),
                        ));
                    }
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
                        "the constraint is checked against every row under {}",
                        lock.as_str()
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
                let columns = unsafe { string_list((*c).keys) };
                if kind != CONSTR_EXCLUSION
                    && is_existing(t)
                    && !t.partitioned
                    && !columns.is_empty()
                {
                    let table = t
                        .name
                        .rsplit('.')
                        .next()
                        .unwrap_or("")
                        .trim_matches('"')
                        .to_string();
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
                    let schema = t.name.rsplit_once('.').map(|(s, _)| s).unwrap_or("");
                    let cols: Vec<String> = columns.iter().map(|c| quote_ident(c)).collect();
                    h.safe_form = Some(format!(
                        "CREATE UNIQUE INDEX CONCURRENTLY {name_q} ON {table_q} ({cols}); ALTER TABLE {table_q} ADD CONSTRAINT {name_q} {word} USING INDEX {name_q};",
                        name_q = quote_ident(&name),
                        table_q = t.name,
                        cols = cols.join(", ")
                    ));
                    let _ = schema;
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
        let part = self.target(unsafe { (*cmd).name });
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
        if unsafe { (*cmd).concurrent } {
            let lock = LockMode::ShareUpdateExclusive;
            return (
                self.concurrently("detach_partition_not_concurrent", lock, parent, &stmt.text),
                lock,
            );
        }
        let part = unsafe { written_name((*cmd).name) };
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

    /// VACUUM FULL and CLUSTER rewrite each table they name under ACCESS EXCLUSIVE.
    fn rewrite_all(&mut self, stmt: &Statement, hits: &mut Vec<Hit>) {
        let (rule, rels): (&'static str, Vec<*mut pg_sys::RangeVar>) = unsafe {
            if (*stmt.node).type_ == pg_sys::NodeTag::T_ClusterStmt {
                let c = stmt.node.cast::<pg_sys::ClusterStmt>();
                ("cluster", vec![(*c).relation])
            } else {
                let v = stmt.node.cast::<pg_sys::VacuumStmt>();
                if !has_option((*v).options, "full") {
                    return;
                }
                let rels = pgrx::PgList::<pg_sys::VacuumRelation>::from_pg((*v).rels);
                let rels: Vec<_> = rels.iter_ptr().map(|r| (*r).relation).collect();
                (
                    "vacuum_full",
                    if rels.is_empty() {
                        vec![std::ptr::null_mut()]
                    } else {
                        rels
                    },
                )
            }
        };
        for rv in rels {
            let what = if rule == "cluster" {
                "CLUSTER"
            } else {
                "VACUUM FULL"
            };
            if rv.is_null() {
                hits.push(Hit {
                    rule,
                    status: Status::Fail,
                    lock: Some(LockMode::AccessExclusive),
                    target: None,
                    work: Work::Rewrite,
                    safe_form: None,
                    detail: format!("{what} without a table rewrites every table of the database, one after another"),
                });
                continue;
            }
            let t = self.target(rv);
            let mut h = self.sized(
                hit(
                    rule,
                    Status::Pass,
                    LockMode::AccessExclusive,
                    &t,
                    Work::Rewrite,
                ),
                &format!("{what} rewrites the table under ACCESS EXCLUSIVE"),
            );
            h.detail += "; to reclaim space online use pg_repack or pg_squeeze";
            hits.push(h);
        }
    }

    fn reindex(&mut self, stmt: &Statement) -> Hit {
        let r = stmt.node.cast::<pg_sys::ReindexStmt>();
        let (kind, rv, params) = unsafe { ((*r).kind, (*r).relation, (*r).params) };
        let concurrent = has_option(params, "concurrently");
        let (target, index) = match kind {
            pg_sys::ReindexObjectType::REINDEX_OBJECT_INDEX => {
                let index = relation_oid(rv);
                (index.and_then(index_table).map(describe), index)
            }
            pg_sys::ReindexObjectType::REINDEX_OBJECT_TABLE => (Some(self.target(rv)), None),
            _ => (None, None),
        };
        let Some(t) = target else {
            return Hit {
                rule: "reindex_not_concurrent",
                status: if concurrent {
                    Status::Pass
                } else {
                    Status::Fail
                },
                lock: Some(LockMode::Share),
                target: None,
                work: Work::Scan,
                safe_form: None,
                detail: "REINDEX of a schema or database rebuilds every index in it".into(),
            };
        };
        if concurrent {
            return self.concurrently(
                "reindex_not_concurrent",
                LockMode::ShareUpdateExclusive,
                &t,
                &stmt.text,
            );
        }
        let mut h = self.sized(
            hit("reindex_not_concurrent", Status::Pass, LockMode::Share, &t, Work::Scan),
            "REINDEX blocks writes to the table and takes ACCESS EXCLUSIVE on each index it rebuilds",
        );
        if is_existing(&t) {
            h.safe_form = Some(match index {
                Some(i) => format!("REINDEX INDEX CONCURRENTLY {}", relation_name(i)),
                None => format!("REINDEX TABLE CONCURRENTLY {}", t.name),
            });
        }
        h
    }

    fn lock(&mut self, stmt: &Statement, hits: &mut Vec<Hit>, exclusive: &mut Vec<Target>) {
        let l = stmt.node.cast::<pg_sys::LockStmt>();
        let (rels, mode) = unsafe { ((*l).relations, (*l).mode) };
        let mode = LockMode::ALL[(mode.clamp(1, 8) - 1) as usize];
        let rels = unsafe { pgrx::PgList::<pg_sys::RangeVar>::from_pg(rels) };
        for rv in rels.iter_ptr() {
            let t = self.target(rv);
            let mut h = hit("lock_table", Status::Pass, mode, &t, Work::None);
            if is_existing(&t) {
                h.status = Status::Warn;
                h.detail = format!(
                    "LOCK TABLE holds {} until the transaction ends: it {} for the rest of the migration",
                    mode.as_str(),
                    mode.blocks()
                );
                if mode == LockMode::AccessExclusive {
                    exclusive.push(t.clone());
                }
            } else {
                h.detail = "the table is new: nobody else waits for it".into();
            }
            hits.push(h);
        }
    }

    /// An enum value added in this transaction block cannot be used before the block commits.
    fn enum_use(&self, stmt: &Statement, tag: pg_sys::NodeTag, hits: &mut Vec<Hit>) {
        if tag == pg_sys::NodeTag::T_AlterEnumStmt || !self.in_transaction {
            return;
        }
        for value in &self.enum_values {
            let literal = catalog::quote_literal(value);
            if stmt.text.contains(&literal) {
                hits.push(Hit {
                    rule: "enum_value_used_in_transaction",
                    status: Status::Fail,
                    lock: None,
                    target: None,
                    work: Work::None,
                    safe_form: Some("COMMIT; -- after ALTER TYPE ... ADD VALUE, then use the value".into()),
                    detail: format!(
                        "enum value {literal} was added in this transaction block: PostgreSQL refuses to use it before COMMIT (unsafe use of new value)"
                    ),
                });
            }
        }
    }
}

/// Whether a SET's value is 0 (lock_timeout = 0 means wait for ever).
fn is_zero(args: *mut pg_sys::List) -> bool {
    let args = unsafe { pgrx::PgList::<pg_sys::Node>::from_pg(args) };
    let Some(first) = args.get_ptr(0) else {
        return true;
    };
    // SAFETY: SET values are A_Const nodes; the union member is chosen by the value's tag.
    unsafe {
        if (*first).type_ != pg_sys::NodeTag::T_A_Const {
            return false;
        }
        let c = first.cast::<pg_sys::A_Const>();
        match (*c).val.node.type_ {
            pg_sys::NodeTag::T_Integer => (*c).val.ival.ival == 0,
            pg_sys::NodeTag::T_String => {
                let s = text_of((*c).val.sval.sval);
                s.trim()
                    .trim_end_matches(|ch: char| ch.is_alphabetic())
                    .trim()
                    == "0"
            }
            _ => false,
        }
    }
}

/// Whether a List of DefElem options holds `name` switched on (VACUUM (FULL), REINDEX (CONCURRENTLY)).
fn has_option(options: *mut pg_sys::List, name: &str) -> bool {
    let options = unsafe { pgrx::PgList::<pg_sys::DefElem>::from_pg(options) };
    options.iter_ptr().any(|d| unsafe {
        // SAFETY: utility statement options are DefElem nodes.
        text_of((*d).defname) == name && ((*d).arg.is_null() || pg_sys::defGetBoolean(d))
    })
}

/// The column of a `CHECK (column IS NOT NULL)` expression.
unsafe fn not_null_column(expr: *mut pg_sys::Node) -> Option<String> {
    // SAFETY: raw expression nodes, cast only after checking their tags.
    unsafe {
        if expr.is_null() || (*expr).type_ != pg_sys::NodeTag::T_NullTest {
            return None;
        }
        let n = expr.cast::<pg_sys::NullTest>();
        let arg = (*n).arg.cast::<pg_sys::Node>();
        if (*n).nulltesttype != pg_sys::NullTestType::IS_NOT_NULL
            || arg.is_null()
            || (*arg).type_ != pg_sys::NodeTag::T_ColumnRef
        {
            return None;
        }
        let fields = string_list((*arg.cast::<pg_sys::ColumnRef>()).fields);
        (fields.len() == 1).then(|| fields[0].clone())
    }
}

/// Whether a column default is volatile, and its text as PostgreSQL deparses it: the raw
/// expression is transformed as ALTER TABLE ... ADD COLUMN would (functions resolved through the
/// caller's search_path), in a subtransaction so an unknown function is an answer, not an ERROR.
fn volatile_default(expr: *mut pg_sys::Node) -> Result<(bool, String), String> {
    let expr = expr as usize;
    catalog::in_subtransaction(move || unsafe {
        // SAFETY: a fresh ParseState with no range table: a column default may not refer to
        // columns. Nothing is executed; the expression is only analysed and printed.
        let pstate = pg_sys::make_parsestate(std::ptr::null_mut());
        let node = pg_sys::transformExpr(
            pstate,
            expr as *mut pg_sys::Node,
            pg_sys::ParseExprKind::EXPR_KIND_COLUMN_DEFAULT,
        );
        let volatile = pg_sys::contain_volatile_functions(node);
        let text = text_of(pg_sys::deparse_expression(
            node,
            std::ptr::null_mut(),
            false,
            false,
        ));
        pg_sys::free_parsestate(pstate);
        (volatile, text)
    })
}
