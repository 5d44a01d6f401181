//! Reading the raw parse tree that `super::parse` builds from a migration: the three unsafe steps
//! every rule takes (following a pointer of the tree, walking one of its Lists, casting a Node
//! after checking its tag), each argued once here so the rules read the tree in safe code.
//!
//! What makes them sound: the lint code holds no pointer but those it read out of that tree
//! (statement nodes, their fields, the elements of their Lists), each typed as the struct
//! PostgreSQL's parsenodes.h declares for that field, or a Node whose tag was checked. The tree
//! is allocated in the memory context of the lint function's call, so it lives until the call
//! returns, and nothing changes it while the rules read it (the parser is done; transformExpr
//! builds new nodes).

use crate::own_sql;
use pgrx::PgList;
use pgrx::pg_sys;

/// The struct a pointer of the parse tree points to. NULL (a field the parser left unset where
/// the rule expects one) is an ERROR, not a crash.
pub fn node<'tree, T>(p: *const T) -> &'tree T {
    // SAFETY: a pointer into the live parse tree, at a `T` (see the module's comment); as_ref
    // refuses NULL.
    unsafe { p.as_ref() }.expect("a parse-tree field the parser sets")
}

/// The elements of a List of the parse tree, as pointers to `T`, the element type parsenodes.h
/// gives that List. NIL (NULL) is the empty list.
pub fn list<T>(l: *mut pg_sys::List) -> PgList<T> {
    // SAFETY: a List of the live parse tree (see the module's comment), or NIL, which PgList
    // reads as empty; PgList only reads it.
    unsafe { PgList::from_pg(l) }
}

/// A parse-node struct and the tag PostgreSQL gives every node of that struct.
pub trait Tagged {
    const TAG: pg_sys::NodeTag;
}

macro_rules! tagged {
    ($($struct:ident => $tag:ident),* $(,)?) => {
        $(impl Tagged for pg_sys::$struct {
            const TAG: pg_sys::NodeTag = pg_sys::NodeTag::$tag;
        })*
    };
}

tagged!(
    A_Const => T_A_Const,
    ColumnRef => T_ColumnRef,
    NullTest => T_NullTest,
    String => T_String,
);

/// The node as the struct `T` when its tag says it is one; None when it is another node or NULL.
pub fn cast<'tree, T: Tagged>(n: *mut pg_sys::Node) -> Option<&'tree T> {
    // SAFETY: a Node of the live parse tree or NULL (see the module's comment); every node
    // starts with its tag, and a node whose tag is `T::TAG` is a `T` (the Tagged impls above
    // pair each struct with its own tag).
    unsafe {
        n.as_ref()
            .filter(|n| n.type_ == T::TAG)
            .map(|n| &*(n as *const pg_sys::Node).cast::<T>())
    }
}

/// A raw expression of the tree analysed as PostgreSQL analyses it in the clause `kind` (its
/// functions and operators resolved through the caller's search_path), and its text as
/// PostgreSQL deparses it; `volatile` says whether it calls a volatile function. Runs in a
/// subtransaction, so an expression PostgreSQL refuses (an unknown function, a bad value) is an
/// answer (its message), not an ERROR of the lint.
pub fn analyse_expression(
    raw: *mut pg_sys::Node,
    kind: pg_sys::ParseExprKind::Type,
) -> Result<Analysed, String> {
    let raw = raw as usize;
    // SAFETY: raw is a raw expression of the live parse tree (see the module's comment), which
    // transformExpr reads into new nodes; a fresh ParseState with no range table, as neither a
    // column default nor a partition bound may refer to columns. The expression is analysed and
    // printed, never executed; an ERROR is rolled back by the subtransaction.
    own_sql::in_subtransaction(move || unsafe {
        let pstate = pg_sys::make_parsestate(std::ptr::null_mut());
        let node = pg_sys::transformExpr(pstate, raw as *mut pg_sys::Node, kind);
        let volatile = pg_sys::contain_volatile_functions(node);
        let text = super::text_of(pg_sys::deparse_expression(
            node,
            std::ptr::null_mut(),
            false,
            false,
        ));
        pg_sys::free_parsestate(pstate);
        Analysed { volatile, text }
    })
}

/// What `analyse_expression` found.
pub struct Analysed {
    pub volatile: bool,
    pub text: String,
}
