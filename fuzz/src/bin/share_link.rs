//! Fuzz target: the page's share-link parser, then fitting the view to a model's concepts.
use intervene_web::link::View;

fn main() {
    let concepts: Vec<String> = ["quad1", "quad2", "quad3", "quad4"]
        .map(String::from)
        .into();
    afl::fuzz!(|bytes: &[u8]| {
        let Ok(query) = std::str::from_utf8(bytes) else {
            return;
        };
        if let Ok(Some(view)) = View::from_query(query, "quad-cm") {
            let _ = view.to_query();
            let _ = view.fit_to(&concepts);
        }
    });
}
