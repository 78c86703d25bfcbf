//! Seeding a topic fed by Kafka Connect when Connect does not run: `kfn dev`
//! without `--connect` writes the rows an SQL file inserts as Debezium's
//! snapshot would (`{"before": null, "after": row, "op": "r"}`, JSON, keyed by
//! the topic's `key` column), so the functions that look the table up find
//! the same rows as with PostgreSQL and Debezium. `[local] seed` in
//! functions.toml names the topics and their files.
//!
//! Only `INSERT INTO <table> (<columns>) VALUES (...), ...;` statements into
//! the table named like the topic are read, with literal values: strings,
//! numbers, NULL, TRUE and FALSE. Decimal numbers (with a point) become JSON
//! strings, as Debezium sends `numeric` columns with
//! `decimal.handling.mode=string`; whole numbers stay numbers. Columns the
//! INSERT leaves to their defaults are absent from the row.
//!
//! ```
//! let sql = "-- the catalog\nINSERT INTO shop.products (product_id, name, price, stock) VALUES\n  ('SKU-001', 'Beans ''1 kg''', 19.99, 500);";
//! let rows = kfn::dev::seed::sql_rows(sql, "shop.products").unwrap();
//! assert_eq!(rows[0]["name"], "Beans '1 kg'");
//! assert_eq!(rows[0]["price"], "19.99");
//! assert_eq!(rows[0]["stock"], 500);
//! ```

use std::path::{Path, PathBuf};

use bytes::Bytes;
use serde_json::{json, Map, Value};

use crate::config::Config;
use crate::kafka::consumer::{list_offset, LogEnd};
use crate::kafka::fetch::Isolation;
use crate::kafka::group::protocol::TopicPartition;
use crate::kafka::producer::partitioner::partition_for_key;
use crate::kafka::producer::{Producer, ProducerConfig, ProducerRecord, SendError};
use crate::kafka::{Cluster, KafkaError};

/// One row of a table: column -> value.
pub type SqlRow = Map<String, Value>;

/// Why a topic could not be seeded.
#[derive(Debug, thiserror::Error)]
pub enum SeedError {
    /// The seed file could not be read.
    #[error("cannot read {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The SQL is not what the seed reads.
    #[error("{}: {message}", path.display())]
    Sql {
        /// The file.
        path: PathBuf,
        /// What is wrong, and where.
        message: String,
    },
    /// `[local] seed` names a topic functions.toml does not declare, or one without a `key` column.
    #[error("[local] seed: {0}")]
    Topic(String),
    /// The broker could not be asked.
    #[error(transparent)]
    Kafka(#[from] KafkaError),
    /// The records could not be written.
    #[error(transparent)]
    Send(#[from] SendError),
}

/// Seeds every topic of `[local] seed` that is empty, from its SQL file
/// (relative to `base`); returns (topic, rows written) for each one seeded.
pub async fn seed_topics(cluster: &Cluster, config: &Config, base: &Path) -> Result<Vec<(String, usize)>, SeedError> {
    let mut seeded = Vec::new();
    if config.local.seed.is_empty() {
        return Ok(seeded);
    }
    let producer = Producer::new(cluster.clone(), ProducerConfig::default()).await?;
    for (topic, file) in &config.local.seed {
        let spec = config.topics.get(topic).ok_or_else(|| SeedError::Topic(format!("{topic} is not declared")))?;
        let key = spec.key.as_deref().ok_or_else(|| {
            SeedError::Topic(format!("{topic} declares no `key`: the seed keys its rows by that column"))
        })?;
        let path = base.join(file);
        let sql = std::fs::read_to_string(&path).map_err(|source| SeedError::Read { path: path.clone(), source })?;
        let rows = sql_rows(&sql, topic).map_err(|message| SeedError::Sql { path: path.clone(), message })?;
        let partitions = cluster.topic(topic).await?.partitions.len() as i32;
        if !is_empty(cluster, topic, partitions).await? {
            continue;
        }
        let mut by_partition: Vec<Vec<ProducerRecord>> = (0..partitions).map(|_| Vec::new()).collect();
        for row in &rows {
            let id = match row.get(key) {
                Some(Value::String(s)) => s.clone(),
                Some(v) if !v.is_null() => v.to_string(),
                _ => return Err(SeedError::Sql { path, message: format!("a row of {topic} has no {key}: {row:?}") }),
            };
            let event = json!({"before": null, "after": row, "op": "r"});
            let record = ProducerRecord::new(
                Some(Bytes::from(id.clone())),
                Some(Bytes::from(event.to_string())),
                kfn_sdk::now_ms(),
            );
            by_partition[partition_for_key(id.as_bytes(), partitions) as usize].push(record);
        }
        for (partition, records) in by_partition.into_iter().enumerate() {
            if !records.is_empty() {
                producer.send(&TopicPartition::new(topic, partition as i32), records).await?;
            }
        }
        seeded.push((topic.clone(), rows.len()));
    }
    Ok(seeded)
}

async fn is_empty(cluster: &Cluster, topic: &str, partitions: i32) -> Result<bool, KafkaError> {
    for p in 0..partitions {
        let tp = TopicPartition::new(topic, p);
        let end = list_offset(cluster, &tp, LogEnd::Latest, Isolation::ReadUncommitted).await?;
        if end > 0 {
            return Ok(false);
        }
    }
    Ok(true)
}

/// The rows the `INSERT` statements of `sql` write into `table`.
///
/// Err: an INSERT into `table` this reader cannot follow, with what it met.
pub fn sql_rows(sql: &str, table: &str) -> Result<Vec<SqlRow>, String> {
    let tokens = tokens(sql)?;
    let mut rows = Vec::new();
    let mut i = 0;
    while i < tokens.len() {
        let is_insert = tokens[i].is_word("INSERT") && tokens.get(i + 1).is_some_and(|t| t.is_word("INTO"));
        let target = tokens.get(i + 2);
        if !(is_insert && target.is_some_and(|t| matches!(t, Token::Word(w) if w.eq_ignore_ascii_case(table)))) {
            i += 1;
            continue;
        }
        i += 3;
        let columns = list(&tokens, &mut i, "the column list")?
            .into_iter()
            .map(|t| match t {
                Token::Word(w) => Ok(w.to_ascii_lowercase()),
                other => Err(format!("expected a column name, found {other:?}")),
            })
            .collect::<Result<Vec<_>, _>>()?;
        if !tokens.get(i).is_some_and(|t| t.is_word("VALUES")) {
            return Err(format!("INSERT INTO {table}: expected VALUES after the columns (only literal rows are read)"));
        }
        i += 1;
        loop {
            let values = list(&tokens, &mut i, "a row of VALUES")?;
            if values.len() != columns.len() {
                return Err(format!(
                    "INSERT INTO {table}: a row of {} values for {} columns",
                    values.len(),
                    columns.len()
                ));
            }
            let row = columns.iter().cloned().zip(values.into_iter().map(literal)).map(|(c, v)| Ok((c, v?)));
            rows.push(row.collect::<Result<SqlRow, String>>()?);
            match tokens.get(i) {
                Some(Token::Punct(',')) => i += 1,
                _ => break,
            }
        }
    }
    Ok(rows)
}

#[derive(Debug, Clone, PartialEq)]
enum Token {
    /// A name or keyword, possibly dotted (`shop.products`).
    Word(String),
    /// A quoted string, `''` unescaped.
    Text(String),
    /// A number as written.
    Number(String),
    Punct(char),
}

impl Token {
    fn is_word(&self, word: &str) -> bool {
        matches!(self, Token::Word(w) if w.eq_ignore_ascii_case(word))
    }
}

fn literal(token: Token) -> Result<Value, String> {
    Ok(match token {
        Token::Text(s) => Value::String(s),
        Token::Number(n) if n.contains('.') => Value::String(n),
        Token::Number(n) => n.parse::<i64>().map(Value::from).map_err(|e| format!("{n}: {e}"))?,
        Token::Word(w) if w.eq_ignore_ascii_case("NULL") => Value::Null,
        Token::Word(w) if w.eq_ignore_ascii_case("TRUE") => Value::Bool(true),
        Token::Word(w) if w.eq_ignore_ascii_case("FALSE") => Value::Bool(false),
        other => return Err(format!("expected a literal value, found {other:?}")),
    })
}

/// A parenthesized, comma-separated list of single tokens at `i`.
fn list(tokens: &[Token], i: &mut usize, what: &str) -> Result<Vec<Token>, String> {
    if tokens.get(*i) != Some(&Token::Punct('(')) {
        return Err(format!("expected ( to open {what}, found {:?}", tokens.get(*i)));
    }
    *i += 1;
    let mut items = Vec::new();
    loop {
        let item = tokens.get(*i).cloned().ok_or_else(|| format!("{what} is not closed"))?;
        // A negative number: the sign is a token of its own.
        let item = match (item, tokens.get(*i + 1)) {
            (Token::Punct('-'), Some(Token::Number(n))) => {
                *i += 1;
                Token::Number(format!("-{n}"))
            }
            (item, _) => item,
        };
        items.push(item);
        *i += 1;
        match tokens.get(*i) {
            Some(Token::Punct(',')) => *i += 1,
            Some(Token::Punct(')')) => {
                *i += 1;
                return Ok(items);
            }
            other => return Err(format!("expected , or ) in {what}, found {other:?} (only literal values are read)")),
        }
    }
}

fn tokens(sql: &str) -> Result<Vec<Token>, String> {
    let mut out = Vec::new();
    let mut chars = sql.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            c if c.is_whitespace() => {}
            '-' if chars.peek() == Some(&'-') => {
                for c in chars.by_ref() {
                    if c == '\n' {
                        break;
                    }
                }
            }
            '\'' => {
                let mut text = String::new();
                loop {
                    match chars.next() {
                        Some('\'') if chars.peek() == Some(&'\'') => {
                            chars.next();
                            text.push('\'');
                        }
                        Some('\'') => break,
                        Some(c) => text.push(c),
                        None => return Err(format!("a string is not closed: '{text}")),
                    }
                }
                out.push(Token::Text(text));
            }
            c if c.is_ascii_digit() => {
                let mut n = c.to_string();
                while let Some(&d) = chars.peek().filter(|d| d.is_ascii_digit() || **d == '.' || **d == '_') {
                    chars.next();
                    if d != '_' {
                        n.push(d);
                    }
                }
                out.push(Token::Number(n));
            }
            c if c.is_alphabetic() || c == '_' || c == '"' => {
                let mut w = String::new();
                if c != '"' {
                    w.push(c);
                }
                while let Some(&d) = chars.peek().filter(|d| d.is_alphanumeric() || matches!(d, '_' | '.' | '"' | '$'))
                {
                    chars.next();
                    if d != '"' {
                        w.push(d);
                    }
                }
                out.push(Token::Word(w));
            }
            c => out.push(Token::Punct(c)),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_repositorys_seed_reads_as_twelve_products() {
        let sql = include_str!("../../../connect/sql/10-shop.sql");
        let rows = sql_rows(sql, "shop.products").unwrap();
        assert_eq!(rows.len(), 12);
        assert_eq!(rows[0]["product_id"], "SKU-001");
        assert_eq!(rows[1]["price"], "129.00", "numeric keeps its scale, as Debezium's string decimals do");
        assert_eq!(rows[11]["stock"], 10_000);
        assert!(sql_rows(sql, "shop.other").unwrap().is_empty());
    }

    #[test]
    fn several_statements_nulls_and_negative_numbers() {
        let sql = "insert into t (a, b, c) values (1, NULL, -2.5); INSERT INTO u (a) VALUES (9); INSERT INTO t (a, b, c) VALUES ('x', TRUE, -3);";
        let rows = sql_rows(sql, "t").unwrap();
        assert_eq!(Value::from(rows[0].clone()), json!({"a": 1, "b": null, "c": "-2.5"}));
        assert_eq!(Value::from(rows[1].clone()), json!({"a": "x", "b": true, "c": -3}));
    }

    #[test]
    fn what_is_not_a_literal_row_is_an_error() {
        assert!(sql_rows("INSERT INTO t (a) SELECT 1;", "t").unwrap_err().contains("VALUES"));
        assert!(sql_rows("INSERT INTO t (a) VALUES (now());", "t").unwrap_err().contains("literal"));
        assert!(sql_rows("INSERT INTO t (a, b) VALUES (1);", "t").unwrap_err().contains("1 values for 2 columns"));
        assert!(sql_rows("INSERT INTO t (a) VALUES ('open);", "t").unwrap_err().contains("not closed"));
    }
}
