//! Strict reading of TOML settings files: a key the settings do not know is an error that names
//! it and the nearest known key. Ignoring it would run with the default instead of what was
//! meant (`epochz = 5` trains for the default number of epochs).

use serde::de::{self, DeserializeOwned, Visitor};
use serde::Serialize;

/// Parses `text` as `T`, refusing the first key that `T` does not read. The keys of
/// `examples` (serialised) are the candidates suggested for a misspelt one.
///
/// Keys inside a `#[serde(flatten)]` field are not seen here (serde hands them over without
/// telling); check such tables with [`check_table_keys`].
pub(crate) fn from_str_strict<T: DeserializeOwned + Serialize>(
    text: &str,
    examples: &[T],
) -> Result<T, String> {
    let mut unknown = Vec::new();
    let parsed: Result<T, _> = serde_ignored::deserialize(toml::Deserializer::new(text), |path| {
        unknown.push(path.to_string())
    });
    // A misspelt key usually also leaves a required one missing: the unknown key, seen
    // first, is the cause to report.
    if let Some(path) = unknown.first() {
        let known = known_keys(examples, parent(path));
        return Err(unknown_key(path, &known));
    }
    parsed.map_err(|e| e.to_string().trim_end().to_string())
}

/// Whether an error of [`from_str_strict`] or [`check_table_keys`] is about an unknown key.
pub(crate) fn is_unknown_key(error: &str) -> bool {
    error.starts_with("unknown key")
}

/// Refuses a key of the top-level table `table` of `text` that is not in `allowed` (for a
/// table read through `#[serde(flatten)]`, whose unknown keys serde drops silently).
pub(crate) fn check_table_keys(text: &str, table: &str, allowed: &[String]) -> Result<(), String> {
    let Ok(root) = text.parse::<toml::Table>() else {
        return Ok(()); // the typed parse reports syntax errors with their position
    };
    let Some(toml::Value::Table(t)) = root.get(table) else {
        return Ok(());
    };
    match t.keys().find(|k| !allowed.contains(k)) {
        None => Ok(()),
        Some(key) => Err(unknown_key(&format!("{table}.{key}"), allowed)),
    }
}

/// The field names of a struct read by serde's derive (one without `#[serde(flatten)]`, which
/// asks for a map instead and has no field list).
pub(crate) fn struct_fields<T: DeserializeOwned>() -> Vec<String> {
    let mut fields: &'static [&'static str] = &[];
    let _ = T::deserialize(FieldProbe(&mut fields));
    fields.iter().map(|f| f.to_string()).collect()
}

/// The keys found at `parent` (dotted) in the serialised `examples`; all their keys anywhere
/// when `parent` leads nowhere in them.
pub(crate) fn known_keys<T: Serialize>(examples: &[T], parent: &str) -> Vec<String> {
    let values: Vec<toml::Value> = examples
        .iter()
        .filter_map(|e| toml::Value::try_from(e).ok())
        .collect();
    let mut here: Vec<String> = values
        .iter()
        .filter_map(|v| descend(v, parent))
        .filter_map(|v| v.as_table())
        .flat_map(|t| t.keys().cloned())
        .collect();
    if here.is_empty() {
        values.iter().for_each(|v| all_keys(v, &mut here));
    }
    here.sort();
    here.dedup();
    here
}

fn parent(path: &str) -> &str {
    path.rsplit_once('.').map_or("", |(p, _)| p)
}

fn descend<'a>(value: &'a toml::Value, path: &str) -> Option<&'a toml::Value> {
    if path.is_empty() {
        return Some(value);
    }
    let mut v = value;
    for part in path.split('.') {
        v = match v {
            toml::Value::Table(t) => t.get(part)?,
            toml::Value::Array(a) => a.get(part.parse::<usize>().ok()?).or_else(|| a.first())?,
            _ => return None,
        };
    }
    Some(v)
}

fn all_keys(value: &toml::Value, out: &mut Vec<String>) {
    match value {
        toml::Value::Table(t) => {
            for (k, v) in t {
                out.push(k.clone());
                all_keys(v, out);
            }
        }
        toml::Value::Array(a) => a.iter().for_each(|v| all_keys(v, out)),
        _ => {}
    }
}

/// "unknown key `train.epochz`; did you mean `epochs`?", or the known keys when none is near.
fn unknown_key(path: &str, known: &[String]) -> String {
    let name = path.rsplit('.').next().unwrap_or(path);
    let nearest = known
        .iter()
        .map(|k| (edit_distance(name, k), k))
        .filter(|(d, k)| *d <= 2.max(k.chars().count() / 3))
        .min();
    match nearest {
        Some((_, k)) => format!("unknown key `{path}`; did you mean `{k}`?"),
        None if known.is_empty() => format!("unknown key `{path}`"),
        None => format!(
            "unknown key `{path}`; known keys here: {}",
            known.join(", ")
        ),
    }
}

/// Levenshtein distance over characters.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let next = (diagonal + usize::from(ca != *cb))
                .min(row[j] + 1)
                .min(row[j + 1] + 1);
            diagonal = row[j + 1];
            row[j + 1] = next;
        }
    }
    row[b.len()]
}

/// A deserializer that only records the field list serde's derive passes for a struct.
struct FieldProbe<'a>(&'a mut &'static [&'static str]);

impl<'de> de::Deserializer<'de> for FieldProbe<'_> {
    type Error = de::value::Error;

    fn deserialize_any<V: Visitor<'de>>(self, _visitor: V) -> Result<V::Value, Self::Error> {
        Err(de::Error::custom("field probe"))
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        fields: &'static [&'static str],
        _visitor: V,
    ) -> Result<V::Value, Self::Error> {
        *self.0 = fields;
        Err(de::Error::custom("field probe"))
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
        option unit unit_struct newtype_struct seq tuple tuple_struct map enum identifier
        ignored_any
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Inner {
        epochs: usize,
        #[serde(default)]
        seed: u64,
    }

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Outer {
        name: String,
        train: Inner,
    }

    fn example() -> Outer {
        Outer {
            name: "x".into(),
            train: Inner { epochs: 1, seed: 0 },
        }
    }

    #[test]
    fn an_unknown_key_is_named_with_the_nearest_known_one() {
        let text = "name = \"a\"\n[train]\nepochs = 3\nepochz = 5\n";
        let e = from_str_strict::<Outer>(text, &[example()]).unwrap_err();
        assert_eq!(e, "unknown key `train.epochz`; did you mean `epochs`?");
        let e =
            from_str_strict::<Outer>("name = \"a\"\nfoo = 1\n[train]\nepochs = 3\n", &[example()])
                .unwrap_err();
        assert_eq!(e, "unknown key `foo`; known keys here: name, train");
        let e = from_str_strict::<Outer>("name = \"a\"\n[train]\nepochz = 3\n", &[example()])
            .unwrap_err();
        assert_eq!(e, "unknown key `train.epochz`; did you mean `epochs`?");
        let ok = from_str_strict::<Outer>("name = \"a\"\n[train]\nepochs = 3\n", &[example()]);
        assert_eq!(ok.unwrap().train.epochs, 3);
    }

    #[test]
    fn flattened_tables_are_checked_against_field_lists() {
        assert_eq!(struct_fields::<Inner>(), ["epochs", "seed"]);
        let allowed = struct_fields::<Inner>();
        let text = "[train]\nepochs = 3\nsed = 1\n";
        let e = check_table_keys(text, "train", &allowed).unwrap_err();
        assert_eq!(e, "unknown key `train.sed`; did you mean `seed`?");
        assert!(check_table_keys("[train]\nepochs = 3\n", "train", &allowed).is_ok());
    }

    #[test]
    fn edit_distances() {
        assert_eq!(edit_distance("epochz", "epochs"), 1);
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(edit_distance("batchsize", "batch_size"), 1);
    }
}
