//! Typed views of the raw numbers Xen puts on the wire, and the error for a number that
//! names nothing.
//!
//! Every closed set of constants in the public headers (`BLKIF_OP_*`, `GNTST_*`, `XS_*`,
//! ...) becomes a Rust enum through [`xen_enum!`]: `TryFrom<raw>` refuses an unknown
//! value with [`UnknownValue`], `From<enum> for raw` gives it back, and `c_name()` names
//! the C constant (the layout test uses it to check every value against the headers).

use core::fmt;

/// A raw value read from the wire (or from a hypercall) that is not one of the values
/// the ABI defines for `kind`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct UnknownValue<T> {
    /// What the value was supposed to be, e.g. `"blkif operation"`.
    pub kind: &'static str,
    /// The value that was read.
    pub value: T,
}

impl<T: fmt::Display> fmt::Display for UnknownValue<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "unknown {} {}", self.kind, self.value)
    }
}

impl<T: fmt::Debug + fmt::Display> core::error::Error for UnknownValue<T> {}

/// Defines a `#[repr($raw)]` enum over a closed set of C constants, with `TryFrom<$raw>`
/// (error [`UnknownValue`]), `From<Self> for $raw`, `raw()`, `c_name()` and `ALL`.
macro_rules! xen_enum {
    (
        $(#[$meta:meta])*
        $vis:vis enum $name:ident : $raw:ty as $kind:literal {
            $(
                $(#[$vmeta:meta])*
                $variant:ident = $value:expr => $cname:literal
            ),+ $(,)?
        }
    ) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        #[repr($raw)]
        $vis enum $name {
            $( $(#[$vmeta])* $variant = $value, )+
        }

        impl $name {
            /// Every value this ABI defines, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The raw value as it appears on the wire.
            pub const fn raw(self) -> $raw {
                self as $raw
            }

            /// The name of the C constant in Xen's public headers.
            pub const fn c_name(self) -> &'static str {
                match self {
                    $($name::$variant => $cname,)+
                }
            }

            /// The typed value for `raw`, or `None` if the ABI defines no such value.
            pub const fn from_raw(raw: $raw) -> Option<Self> {
                $(
                    if raw == $value {
                        return Some($name::$variant);
                    }
                )+
                None
            }
        }

        impl TryFrom<$raw> for $name {
            type Error = $crate::enums::UnknownValue<$raw>;
            fn try_from(raw: $raw) -> Result<Self, $crate::enums::UnknownValue<$raw>> {
                Self::from_raw(raw).ok_or($crate::enums::UnknownValue { kind: $kind, value: raw })
            }
        }

        impl From<$name> for $raw {
            fn from(v: $name) -> $raw {
                v as $raw
            }
        }
    };
}

pub(crate) use xen_enum;

#[cfg(test)]
mod tests {
    xen_enum! {
        enum Sample: i16 as "sample" {
            A = 0 => "A",
            B = -3 => "B",
        }
    }

    #[test]
    fn round_trip_and_unknown() {
        for v in Sample::ALL {
            assert_eq!(Sample::try_from(v.raw()), Ok(*v));
        }
        let err = Sample::try_from(7).unwrap_err();
        assert_eq!(err.value, 7);
        assert_eq!(err.kind, "sample");
        assert_eq!(Sample::B.c_name(), "B");
    }
}
