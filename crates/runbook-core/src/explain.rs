//! Reading an `EXPLAIN (FORMAT JSON, VERBOSE)` plan: which relations and indexes its nodes read.
//! `check_query_plan()` judges a migration's index by it, and cache warming prewarms what a
//! cached query reads.

use serde_json::Value;

/// One plan node that names a relation or an index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scan {
    pub node_type: String,
    /// The node's schema. A Bitmap Index Scan names none; it gets the schema of the Bitmap Heap
    /// Scan above it, which is its index's too (an index lives in its table's schema).
    pub schema: Option<String>,
    pub relation: Option<String>,
    pub index: Option<String>,
}

/// The plan of an EXPLAIN (FORMAT JSON) result: `[{"Plan": {...}, ...}]`.
pub fn top_plan(explain: &Value) -> Option<&Value> {
    explain.get(0).and_then(|top| top.get("Plan"))
}

/// Every node of `plan` (subplans and init plans included, as EXPLAIN nests them under "Plans")
/// that names a relation or an index, depth first.
pub fn scans(plan: &Value) -> Vec<Scan> {
    let mut out = Vec::new();
    collect(plan, None, &mut out);
    out
}

/// `above`: the schema of the nearest node above that names one.
fn collect(node: &Value, above: Option<&str>, out: &mut Vec<Scan>) {
    let text = |key: &str| node.get(key).and_then(Value::as_str).map(str::to_string);
    let (relation, index) = (text("Relation Name"), text("Index Name"));
    let schema = text("Schema");
    if relation.is_some() || index.is_some() {
        let inherited = if relation.is_none() {
            above.map(str::to_string)
        } else {
            None
        };
        out.push(Scan {
            node_type: text("Node Type").unwrap_or_default(),
            schema: schema.clone().or(inherited),
            relation,
            index,
        });
    }
    let below = schema.as_deref().or(above);
    for child in node
        .get("Plans")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        collect(child, below, out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan() -> Value {
        serde_json::json!([{ "Plan": {
            "Node Type": "Hash Join",
            "Plans": [
                { "Node Type": "Seq Scan", "Schema": "app", "Relation Name": "Orders" },
                { "Node Type": "Bitmap Heap Scan", "Schema": "app", "Relation Name": "users",
                  "Plans": [ { "Node Type": "Bitmap Index Scan", "Index Name": "users_email_idx" } ] },
                { "Node Type": "Index Scan", "Schema": "app", "Relation Name": "items",
                  "Index Name": "items_pkey", "Subplan Name": "InitPlan 1 (returns $0)" }
            ]
        }, "Planning Time": 0.1 }])
    }

    #[test]
    fn scans_lists_every_node_that_reads_a_relation_or_index_depth_first() {
        let explain = plan();
        let found = scans(top_plan(&explain).unwrap());
        let names: Vec<_> = found
            .iter()
            .map(|s| {
                (
                    s.node_type.as_str(),
                    s.relation.as_deref(),
                    s.index.as_deref(),
                )
            })
            .collect();
        assert_eq!(
            names,
            vec![
                ("Seq Scan", Some("Orders"), None),
                ("Bitmap Heap Scan", Some("users"), None),
                ("Bitmap Index Scan", None, Some("users_email_idx")),
                ("Index Scan", Some("items"), Some("items_pkey")),
            ]
        );
    }

    #[test]
    fn a_bitmap_index_scan_takes_the_schema_of_its_bitmap_heap_scan() {
        let explain = plan();
        let found = scans(top_plan(&explain).unwrap());
        assert_eq!(found[2].index.as_deref(), Some("users_email_idx"));
        assert_eq!(found[2].schema.as_deref(), Some("app"));
        assert_eq!(found[0].schema.as_deref(), Some("app"));
    }

    #[test]
    fn bitmap_index_scans_under_a_bitmap_or_take_their_own_tables_schema() {
        let explain = serde_json::json!([{ "Plan": {
            "Node Type": "Nested Loop",
            "Plans": [
                { "Node Type": "Bitmap Heap Scan", "Schema": "Sales", "Relation Name": "orders",
                  "Plans": [ { "Node Type": "BitmapOr", "Plans": [
                      { "Node Type": "Bitmap Index Scan", "Index Name": "orders_a_idx" },
                      { "Node Type": "Bitmap Index Scan", "Index Name": "orders_b_idx" } ] } ] },
                { "Node Type": "Bitmap Heap Scan", "Schema": "crm", "Relation Name": "users",
                  "Plans": [ { "Node Type": "Bitmap Index Scan", "Index Name": "users_idx" } ] }
            ]
        }}]);
        let found = scans(top_plan(&explain).unwrap());
        let indexes: Vec<_> = found
            .iter()
            .filter(|s| s.relation.is_none())
            .map(|s| (s.schema.as_deref(), s.index.as_deref()))
            .collect();
        assert_eq!(
            indexes,
            vec![
                (Some("Sales"), Some("orders_a_idx")),
                (Some("Sales"), Some("orders_b_idx")),
                (Some("crm"), Some("users_idx")),
            ]
        );
    }

    #[test]
    fn an_index_node_without_any_schema_above_stays_without_one() {
        let explain = serde_json::json!([{ "Plan":
            { "Node Type": "Bitmap Index Scan", "Index Name": "lonely_idx" } }]);
        assert_eq!(scans(top_plan(&explain).unwrap())[0].schema, None);
    }

    #[test]
    fn top_plan_of_something_else_is_none() {
        assert!(top_plan(&serde_json::json!({"Plan": {}})).is_none());
        assert!(top_plan(&Value::Null).is_none());
    }
}
