//! The lint rules, applied statement by statement: the raw parse tree says what a statement does,
//! the catalog says how big its table is, runbook_core::lint judges the two. `Session` carries
//! what earlier statements changed (tables created, lock_timeout set, transaction blocks, NOT VALID
//! constraints, enum values added).

mod alter;

use super::tree::{list, node};
use super::{
    Hit, Statement, Target, describe, index_table, relation_name, relation_oid, text_of,
    written_name,
};
use crate::own_sql::{self, col, quote_ident};
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
        let (schema, rel) = (text_of(node(rv).schemaname), text_of(node(rv).relname));
        let created = self
            .created
            .iter()
            .any(|(s, r)| *r == rel && (s.is_empty() || schema.is_empty() || *s == schema));
        if created {
            return Target {
                oid: None,
                name: written_name(rv),
                relname: rel,
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
                relname: rel,
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
        // `stmt.node` is a statement node of the raw parse tree; each arm casts it to the struct
        // its tag names.
        let tag = node(stmt.node).type_;
        match tag {
            pg_sys::NodeTag::T_TransactionStmt => self.transaction(stmt.node.cast()),
            pg_sys::NodeTag::T_VariableSetStmt => self.variable_set(stmt.node.cast()),
            pg_sys::NodeTag::T_CreateStmt => {
                let rv = node(stmt.node.cast::<pg_sys::CreateStmt>()).relation;
                let (s, r) = (text_of(node(rv).schemaname), text_of(node(rv).relname));
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
                // RENAME VALUE sets oldVal too; only ADD VALUE makes a value unusable until COMMIT.
                let (value, renamed) = (text_of(node(e).newVal), !node(e).oldVal.is_null());
                if self.in_transaction && !value.is_empty() && !renamed {
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
        match node(t).kind {
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
        let v = node(v);
        let (kind, name, args, local) = (v.kind, text_of(v.name), v.args, v.is_local);
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
        let (rv, concurrent) = (node(i).relation, node(i).concurrent);
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
        let d = node(d);
        let (kind, objects, concurrent) = (d.removeType, d.objects, d.concurrent);
        let objects = list::<pg_sys::List>(objects);
        for names in objects.iter_ptr() {
            // SAFETY: the objects of a DROP are Lists of String nodes (a possibly qualified name),
            // which makeRangeVarFromNameList reads into a new RangeVar (an ERROR if too long).
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
        let views = own_sql::select_one(
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
        let (kind, rv, sub) = (
            node(r).renameType,
            node(r).relation,
            text_of(node(r).subname),
        );
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

    /// VACUUM FULL and CLUSTER rewrite each table they name under ACCESS EXCLUSIVE.
    fn rewrite_all(&mut self, stmt: &Statement, hits: &mut Vec<Hit>) {
        let (rule, rels): (&'static str, Vec<*mut pg_sys::RangeVar>) = {
            if node(stmt.node).type_ == pg_sys::NodeTag::T_ClusterStmt {
                let c = node(stmt.node.cast::<pg_sys::ClusterStmt>());
                ("cluster", vec![c.relation])
            } else {
                let v = node(stmt.node.cast::<pg_sys::VacuumStmt>());
                if !has_option(v.options, "full") {
                    return;
                }
                let rels = list::<pg_sys::VacuumRelation>(v.rels);
                let rels: Vec<_> = rels.iter_ptr().map(|r| node(r).relation).collect();
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
        let (kind, rv, params) = (node(r).kind, node(r).relation, node(r).params);
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
        let (rels, mode) = (node(l).relations, node(l).mode);
        let mode = LockMode::ALL[(mode.clamp(1, 8) - 1) as usize];
        let rels = list::<pg_sys::RangeVar>(rels);
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
            let literal = own_sql::quote_literal(value);
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
    let args = list::<pg_sys::Node>(args);
    let Some(first) = args.get_ptr(0) else {
        return true;
    };
    let Some(c) = super::tree::cast::<pg_sys::A_Const>(first) else {
        return false;
    };
    // SAFETY: an A_Const's value is a union whose member is chosen by its own tag: ival for
    // an Integer, sval for a String.
    unsafe {
        match c.val.node.type_ {
            pg_sys::NodeTag::T_Integer => c.val.ival.ival == 0,
            pg_sys::NodeTag::T_String => {
                let s = text_of(c.val.sval.sval);
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
    let options = list::<pg_sys::DefElem>(options);
    options.iter_ptr().any(|d| {
        // SAFETY: utility statement options are DefElem nodes of the parse tree; defGetBoolean
        // reads the option's argument (an ERROR if it is not a boolean, as for the statement).
        text_of(node(d).defname) == name
            && (node(d).arg.is_null() || unsafe { pg_sys::defGetBoolean(d) })
    })
}
