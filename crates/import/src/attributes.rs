//! Typed, checked access to a node's attributes and to tensors.

use std::collections::BTreeMap;

use crate::ImportError;
use crate::onnx::attribute_proto::AttributeType;
use crate::onnx::tensor_proto::DataType;
use crate::onnx::{AttributeProto, NodeProto, TensorProto};

/// A node's attributes by name, checked against the list the importer understands.
#[derive(Debug)]
pub(crate) struct Attributes<'a> {
    node: String,
    by_name: BTreeMap<&'a str, &'a AttributeProto>,
}

/// Values decoded from a floating-point tensor, with the element type they had.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct FloatTensor {
    pub(crate) values: Vec<f64>,
    pub(crate) double: bool,
}

impl<'a> Attributes<'a> {
    /// The attributes of `node`; any name outside `known` is an error naming it.
    pub(crate) fn new(node: &'a NodeProto, known: &[&str]) -> Result<Self, ImportError> {
        let label = node_label(node);
        let mut by_name = BTreeMap::new();
        for attribute in &node.attribute {
            let name = attribute.name.as_deref().unwrap_or("");
            if !known.contains(&name) {
                return Err(ImportError::Unsupported(format!(
                    "`{name}` on node {label} is not an attribute this importer understands"
                )));
            }
            if by_name.insert(name, attribute).is_some() {
                return Err(ImportError::Invalid(format!(
                    "attribute `{name}` appears twice on node {label}"
                )));
            }
        }
        Ok(Self {
            node: label,
            by_name,
        })
    }

    /// The node, as error messages name it.
    pub(crate) fn node(&self) -> &str {
        &self.node
    }

    fn get(
        &self,
        name: &str,
        kind: AttributeType,
    ) -> Result<Option<&'a AttributeProto>, ImportError> {
        let Some(attribute) = self.by_name.get(name).copied() else {
            return Ok(None);
        };
        let actual = attribute.r#type.unwrap_or(0);
        if actual != kind as i32 {
            let actual = AttributeType::try_from(actual)
                .map(|t| t.as_str_name())
                .unwrap_or("an unknown type");
            return Err(ImportError::Invalid(format!(
                "attribute `{name}` on node {} is {actual}, expected {}",
                self.node,
                kind.as_str_name()
            )));
        }
        Ok(Some(attribute))
    }

    pub(crate) fn has(&self, name: &str) -> bool {
        self.by_name.contains_key(name)
    }

    pub(crate) fn ints(&self, name: &str) -> Result<&'a [i64], ImportError> {
        Ok(self
            .get(name, AttributeType::Ints)?
            .map_or(&[][..], |a| a.ints.as_slice()))
    }

    pub(crate) fn int(&self, name: &str) -> Result<Option<i64>, ImportError> {
        Ok(self.get(name, AttributeType::Int)?.and_then(|a| a.i))
    }

    pub(crate) fn floats(&self, name: &str) -> Result<&'a [f32], ImportError> {
        Ok(self
            .get(name, AttributeType::Floats)?
            .map_or(&[][..], |a| a.floats.as_slice()))
    }

    pub(crate) fn string(&self, name: &str) -> Result<Option<String>, ImportError> {
        self.get(name, AttributeType::String)?
            .map(|a| utf8(a.s.as_deref().unwrap_or_default(), name, &self.node))
            .transpose()
    }

    pub(crate) fn strings(&self, name: &str) -> Result<Vec<String>, ImportError> {
        match self.get(name, AttributeType::Strings)? {
            None => Ok(Vec::new()),
            Some(a) => a
                .strings
                .iter()
                .map(|s| utf8(s, name, &self.node))
                .collect(),
        }
    }

    pub(crate) fn tensor(&self, name: &str) -> Result<Option<&'a TensorProto>, ImportError> {
        Ok(self
            .get(name, AttributeType::Tensor)?
            .and_then(|a| a.t.as_ref()))
    }

    /// A float list given either as `name` (FLOATS, float32) or `name_as_tensor` (a DOUBLE
    /// tensor), never both.
    pub(crate) fn floats_or_tensor(&self, name: &str) -> Result<Option<FloatTensor>, ImportError> {
        let tensor_name = format!("{name}_as_tensor");
        let plain = self.floats(name)?;
        let tensor = self.tensor(&tensor_name)?;
        match (self.has(name), tensor) {
            (true, Some(_)) => Err(ImportError::Invalid(format!(
                "node {} has both `{name}` and `{tensor_name}`",
                self.node
            ))),
            (true, None) => Ok(Some(FloatTensor {
                values: plain.iter().map(|&v| f64::from(v)).collect(),
                double: false,
            })),
            (false, Some(t)) => float_tensor(t, &tensor_name, &self.node).map(Some),
            (false, None) => Ok(None),
        }
    }
}

fn utf8(bytes: &[u8], name: &str, node: &str) -> Result<String, ImportError> {
    String::from_utf8(bytes.to_vec()).map_err(|_| {
        ImportError::Invalid(format!("attribute `{name}` on node {node} is not UTF-8"))
    })
}

/// `name (op Type)`, or `#index (op Type)` for an unnamed node.
pub(crate) fn node_label(node: &NodeProto) -> String {
    let op = node.op_type.as_deref().unwrap_or("?");
    match node.name.as_deref() {
        Some(name) if !name.is_empty() => format!("`{name}` ({op})"),
        _ => format!("{op} (unnamed)"),
    }
}

fn raw<const N: usize>(
    tensor: &TensorProto,
    what: &str,
) -> Result<Option<Vec<[u8; N]>>, ImportError> {
    let Some(raw) = tensor.raw_data.as_deref() else {
        return Ok(None);
    };
    if raw.len() % N != 0 {
        return Err(ImportError::Invalid(format!(
            "{what}: raw data of {} bytes is not a whole number of elements",
            raw.len()
        )));
    }
    Ok(Some(
        raw.chunks_exact(N)
            .map(|chunk| {
                let mut bytes = [0u8; N];
                bytes.copy_from_slice(chunk);
                bytes
            })
            .collect(),
    ))
}

fn check_inline(tensor: &TensorProto, what: &str) -> Result<(), ImportError> {
    if tensor.data_location.unwrap_or(0) != 0 || !tensor.external_data.is_empty() {
        return Err(ImportError::Unsupported(format!(
            "{what} keeps its data in an external file"
        )));
    }
    Ok(())
}

/// A FLOAT or DOUBLE tensor's values (`what` names it in errors).
pub(crate) fn float_tensor(
    tensor: &TensorProto,
    name: &str,
    node: &str,
) -> Result<FloatTensor, ImportError> {
    let what = format!("attribute `{name}` on node {node}");
    check_inline(tensor, &what)?;
    let data_type = tensor.data_type.unwrap_or(0);
    if data_type == DataType::Float as i32 {
        let values = match raw::<4>(tensor, &what)? {
            Some(raw) => raw
                .into_iter()
                .map(|b| f64::from(f32::from_le_bytes(b)))
                .collect(),
            None => tensor.float_data.iter().map(|&v| f64::from(v)).collect(),
        };
        Ok(FloatTensor {
            values,
            double: false,
        })
    } else if data_type == DataType::Double as i32 {
        let values = match raw::<8>(tensor, &what)? {
            Some(raw) => raw.into_iter().map(f64::from_le_bytes).collect(),
            None => tensor.double_data.clone(),
        };
        Ok(FloatTensor {
            values,
            double: true,
        })
    } else {
        Err(ImportError::Unsupported(format!(
            "{what} has element type {}, expected FLOAT or DOUBLE",
            type_name(data_type)
        )))
    }
}

/// A UINT8 tensor's values (the `TreeEnsemble` node modes).
pub(crate) fn u8_tensor(
    tensor: &TensorProto,
    name: &str,
    node: &str,
) -> Result<Vec<u8>, ImportError> {
    let what = format!("attribute `{name}` on node {node}");
    check_inline(tensor, &what)?;
    if tensor.data_type.unwrap_or(0) != DataType::Uint8 as i32 {
        return Err(ImportError::Unsupported(format!(
            "{what} has element type {}, expected UINT8",
            type_name(tensor.data_type.unwrap_or(0))
        )));
    }
    match tensor.raw_data.as_deref() {
        Some(raw) => Ok(raw.to_vec()),
        None => tensor
            .int32_data
            .iter()
            .map(|&v| {
                u8::try_from(v).map_err(|_| ImportError::Invalid(format!("{what} holds {v}")))
            })
            .collect(),
    }
}

/// The name of a tensor element type, for messages.
pub(crate) fn type_name(data_type: i32) -> &'static str {
    DataType::try_from(data_type)
        .map(|t| t.as_str_name())
        .unwrap_or("UNKNOWN")
}
