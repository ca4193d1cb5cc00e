//! Scenes of the shapes world: what is drawn where, and how it is rasterised.

use image::{Rgb, RgbImage};
use rand::RngExt;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

/// Fills in `ALL`, `name()` and serialisation by name for a vocabulary enum.
macro_rules! vocabulary {
    ($(#[$meta:meta])* $name:ident { $($variant:ident => $word:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub enum $name { $($variant),+ }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The word used in captions, questions and answers.
            pub fn name(self) -> &'static str {
                match self { $($name::$variant => $word),+ }
            }

            pub fn from_name(word: &str) -> Option<Self> {
                Self::ALL.iter().copied().find(|item| item.name() == word)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let word = String::deserialize(deserializer)?;
                Self::from_name(&word).ok_or_else(|| {
                    let known: Vec<&str> = Self::ALL.iter().map(|item| item.name()).collect();
                    serde::de::Error::custom(format!(
                        "unknown {} `{word}`; expected one of {}",
                        stringify!($name),
                        known.join(", ")
                    ))
                })
            }
        }

        impl Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(self.name())
            }
        }
    };
}

vocabulary!(
    /// Shape colours, chosen to be told apart from each other and from the grey backgrounds.
    Colour {
        Red => "red",
        Green => "green",
        Blue => "blue",
        Yellow => "yellow",
        Purple => "purple",
        Orange => "orange",
        White => "white",
        Black => "black",
    }
);

vocabulary!(ShapeKind {
    Circle => "circle",
    Square => "square",
    Triangle => "triangle",
    Diamond => "diamond",
});

vocabulary!(
    /// Five regions; each shape of a scene takes a different one, so "the shape on the left" is
    /// always unambiguous.
    Position {
        Left => "left",
        Right => "right",
        Top => "top",
        Bottom => "bottom",
        Centre => "centre",
    }
);

vocabulary!(SizeClass {
    Small => "small",
    Large => "large",
});

vocabulary!(Background {
    Plain => "plain",
    Striped => "striped",
    Checkered => "checkered",
    Dotted => "dotted",
});

impl Colour {
    pub fn rgb(self) -> [u8; 3] {
        match self {
            Colour::Red => [220, 30, 30],
            Colour::Green => [30, 170, 50],
            Colour::Blue => [30, 70, 230],
            Colour::Yellow => [245, 215, 30],
            Colour::Purple => [140, 40, 190],
            Colour::Orange => [250, 130, 20],
            Colour::White => [248, 248, 248],
            Colour::Black => [20, 20, 20],
        }
    }
}

impl ShapeKind {
    pub fn plural(self) -> String {
        format!("{}s", self.name())
    }
}

impl Position {
    /// Region centre as a fraction of the image side, (x, y) with y downwards.
    fn anchor(self) -> (f32, f32) {
        match self {
            Position::Left => (0.18, 0.5),
            Position::Right => (0.82, 0.5),
            Position::Top => (0.5, 0.18),
            Position::Bottom => (0.5, 0.82),
            Position::Centre => (0.5, 0.5),
        }
    }

    /// Grid cell (column, row), used to say which of two shapes is left of / above the other.
    pub fn cell(self) -> (i32, i32) {
        match self {
            Position::Left => (0, 1),
            Position::Right => (2, 1),
            Position::Top => (1, 0),
            Position::Bottom => (1, 2),
            Position::Centre => (1, 1),
        }
    }

    /// "on the left", "in the centre", ...
    pub fn phrase(self) -> &'static str {
        match self {
            Position::Left => "on the left",
            Position::Right => "on the right",
            Position::Top => "at the top",
            Position::Bottom => "at the bottom",
            Position::Centre => "in the centre",
        }
    }
}

impl SizeClass {
    /// Shape radius as a fraction of the image side. With the anchors above and the jitter
    /// below, two large shapes in neighbouring regions never touch.
    fn radius_fraction(self) -> f32 {
        match self {
            SizeClass::Small => 0.075,
            SizeClass::Large => 0.115,
        }
    }
}

const JITTER_FRACTION: f32 = 0.02;

/// One drawn shape.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlacedShape {
    pub shape: ShapeKind,
    pub colour: Colour,
    pub size: SizeClass,
    pub position: Position,
    /// Centre in pixels.
    pub x: f32,
    pub y: f32,
    pub radius: f32,
}

/// Everything drawn in one image.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Scene {
    pub background: Background,
    pub background_rgb: [u8; 3],
    /// Shapes in reading order (left to right, then top to bottom).
    pub shapes: Vec<PlacedShape>,
}

impl Scene {
    /// A random scene with 1 to 3 shapes in distinct regions of a `side`-pixel image.
    pub(crate) fn random(rng: &mut ChaCha8Rng, side: u32) -> Scene {
        let side = side as f32;
        let count = rng.random_range(1..=3usize);
        let mut positions = Position::ALL.to_vec();
        positions.shuffle(rng);
        let mut shapes: Vec<PlacedShape> = positions[..count]
            .iter()
            .map(|&position| {
                let size = *pick(rng, SizeClass::ALL);
                let (anchor_x, anchor_y) = position.anchor();
                let jitter = JITTER_FRACTION * side;
                PlacedShape {
                    shape: *pick(rng, ShapeKind::ALL),
                    colour: *pick(rng, Colour::ALL),
                    size,
                    position,
                    x: anchor_x * side + rng.random_range(-jitter..=jitter),
                    y: anchor_y * side + rng.random_range(-jitter..=jitter),
                    radius: size.radius_fraction() * side,
                }
            })
            .collect();
        shapes.sort_by_key(|shape| shape.position.cell());
        let grey = rng.random_range(105..=150i32);
        let tint = [(); 3].map(|_| rng.random_range(-8..=8i32));
        Scene {
            background: *pick(rng, Background::ALL),
            background_rgb: tint.map(|t| (grey + t) as u8),
            shapes,
        }
    }

    pub fn count_of(&self, kind: ShapeKind) -> usize {
        self.shapes
            .iter()
            .filter(|shape| shape.shape == kind)
            .count()
    }

    pub fn has_colour(&self, colour: Colour) -> bool {
        self.shapes.iter().any(|shape| shape.colour == colour)
    }

    /// Draws the scene: textured background, then each shape with 4×4 supersampled edges.
    pub fn render(&self, side: u32) -> RgbImage {
        let mut image = RgbImage::from_fn(side, side, |x, y| {
            Rgb(self.background_rgb.map(|channel| {
                (i32::from(channel) + texture_offset(self.background, x, y)).clamp(0, 255) as u8
            }))
        });
        for shape in &self.shapes {
            draw_shape(&mut image, shape);
        }
        image
    }
}

pub(crate) fn pick<'a, T>(rng: &mut ChaCha8Rng, items: &'a [T]) -> &'a T {
    &items[rng.random_range(0..items.len())]
}

/// Brightness change of the background texture at pixel (x, y); regular patterns only, so the
/// PNGs stay small.
fn texture_offset(background: Background, x: u32, y: u32) -> i32 {
    match background {
        Background::Plain => 0,
        Background::Striped => {
            if ((x + y) / 4).is_multiple_of(2) {
                14
            } else {
                -14
            }
        }
        Background::Checkered => {
            if (x / 6 + y / 6).is_multiple_of(2) {
                12
            } else {
                -12
            }
        }
        Background::Dotted => {
            if (2..4).contains(&(x % 6)) && (2..4).contains(&(y % 6)) {
                -30
            } else {
                0
            }
        }
    }
}

const SUBSAMPLES: u32 = 4;

fn draw_shape(image: &mut RgbImage, shape: &PlacedShape) {
    let reach = shape.radius * 1.2 + 1.0;
    let side = image.width() as f32;
    let lo = |centre: f32| (centre - reach).floor().clamp(0.0, side - 1.0) as u32;
    let hi = |centre: f32| (centre + reach).ceil().clamp(0.0, side - 1.0) as u32;
    let colour = shape.colour.rgb();
    for py in lo(shape.y)..=hi(shape.y) {
        for px in lo(shape.x)..=hi(shape.x) {
            let mut covered = 0u32;
            for sy in 0..SUBSAMPLES {
                for sx in 0..SUBSAMPLES {
                    let x = px as f32 + (sx as f32 + 0.5) / SUBSAMPLES as f32 - shape.x;
                    let y = py as f32 + (sy as f32 + 0.5) / SUBSAMPLES as f32 - shape.y;
                    covered += u32::from(inside(shape.shape, x / shape.radius, y / shape.radius));
                }
            }
            if covered == 0 {
                continue;
            }
            let total = SUBSAMPLES * SUBSAMPLES;
            let pixel = image.get_pixel_mut(px, py);
            for (channel, &target) in pixel.0.iter_mut().zip(&colour) {
                let blended = (u32::from(*channel) * (total - covered)
                    + u32::from(target) * covered
                    + total / 2)
                    / total;
                *channel = blended as u8;
            }
        }
    }
}

/// Whether the point (x, y), in units of the shape's radius relative to its centre, is inside.
/// Sizes are set so that the four shapes have similar areas.
fn inside(kind: ShapeKind, x: f32, y: f32) -> bool {
    match kind {
        ShapeKind::Circle => x * x + y * y <= 1.0,
        ShapeKind::Square => x.abs() <= 0.85 && y.abs() <= 0.85,
        ShapeKind::Diamond => x.abs() + y.abs() <= 1.15,
        ShapeKind::Triangle => {
            // Pointing up: apex (0, -1.15), base from (-1.15, 0.85) to (1.15, 0.85).
            let (apex_y, base_y, half_base) = (-1.15f32, 0.85f32, 1.15f32);
            if y < apex_y || y > base_y {
                return false;
            }
            let half_width = half_base * (y - apex_y) / (base_y - apex_y);
            x.abs() <= half_width
        }
    }
}
