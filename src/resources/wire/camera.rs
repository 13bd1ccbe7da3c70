//! Camera device settings (Watcher's `CameraConfig`).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_with::skip_serializing_none;

/// Camera device settings, pushed with the stream.
#[skip_serializing_none]
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct CameraConfig {
    /// Image sensor settings.
    pub sensor: Option<Sensor>,
    /// Device identification as read from the camera.
    pub camera_info: Option<CameraInfo>,
    /// Media quality profile.
    pub media_quality: Option<MediaQuality>,
}

/// Image sensor settings (percentages are 0–100).
#[skip_serializing_none]
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Sensor {
    /// Brightness, percent.
    #[schemars(range(min = 0, max = 100))]
    pub brightness_correction: Option<i64>,
    /// Contrast, percent.
    #[schemars(range(min = 0, max = 100))]
    pub contrast_correction: Option<i64>,
    /// Sharpness, percent.
    #[schemars(range(min = 0, max = 100))]
    pub sharpness: Option<i64>,
    /// Saturation, percent.
    #[schemars(range(min = 0, max = 100))]
    pub saturation: Option<i64>,
    /// Wide dynamic range level, percent.
    #[schemars(range(min = 0, max = 100))]
    pub wide_dynamic_range: Option<i64>,
    /// Back-light compensation.
    pub blacklight_compensation: Option<OnOff>,
    /// Infrared cut-off filter.
    pub infrared_cutoff_filter: Option<OnOffAuto>,
    /// Mounting orientation.
    pub image_orientation: Option<ImageOrientation>,
}

/// An on/off mode switch.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct OnOff {
    /// `on` or `off`.
    #[schemars(regex(pattern = "^(on|off)$"))]
    pub mode: String,
}

/// An on/off/auto mode switch.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct OnOffAuto {
    /// `on`, `off` or `auto`.
    #[schemars(regex(pattern = "^(on|off|auto)$"))]
    pub mode: String,
}

/// Mounting orientation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ImageOrientation {
    /// Normal.
    Normal,
    /// Upside down.
    UpsideDown,
}

/// Media quality profile.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum MediaQuality {
    /// Low.
    Low,
    /// Medium.
    Medium,
    /// High.
    High,
}

/// Device identification.
#[skip_serializing_none]
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct CameraInfo {
    /// Firmware version.
    pub firmware: Option<String>,
    /// Model.
    pub model: Option<String>,
    /// Manufacturer.
    pub manufacturer: Option<String>,
    /// Serial number.
    pub serial_number: Option<String>,
}
