//! Which edges of a concept graph the page draws. A learned graph has a weight on every one of
//! its `K(K-1)` possible edges, and drawn all at once they read as a tangle: the page draws only
//! the strongest ones, as many as the visitor asks for, each as wide as its strength.

use intervene::data::Dataset;

/// One edge to draw, `parent -> child`, with its strength relative to the strongest (0 to 1].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Edge {
    pub parent: usize,
    pub child: usize,
    pub strength: f32,
}

/// Every edge a graph over `concepts` concepts can have.
pub fn possible_edges(concepts: usize) -> usize {
    concepts * concepts.saturating_sub(1)
}

/// How many edges are shown until the visitor says otherwise: as many as a tree joining every
/// concept has, the most a sparse graph over them usually holds.
pub fn default_shown(concepts: usize) -> usize {
    concepts.saturating_sub(1)
}

/// The `count` strongest off-diagonal edges of `graph[parent][child]`, strongest first; edges of
/// weight 0 are never drawn.
pub fn strongest(graph: &[Vec<f32>], count: usize) -> Vec<Edge> {
    let mut edges: Vec<(usize, usize, f32)> = graph
        .iter()
        .enumerate()
        .flat_map(|(p, row)| row.iter().enumerate().map(move |(c, &w)| (p, c, w)))
        .filter(|&(p, c, w)| p != c && w.is_finite() && w > 0.0)
        .collect();
    edges.sort_by(|a, b| b.2.total_cmp(&a.2).then((a.0, a.1).cmp(&(b.0, b.1))));
    let top = edges.first().map_or(1.0, |e| e.2);
    edges
        .into_iter()
        .take(count)
        .map(|(parent, child, w)| Edge {
            parent,
            child,
            strength: w / top,
        })
        .collect()
}

/// The true concept graph of the dataset's causal model, where there is one (quad, scenes; MNIST's
/// perturbations have none).
pub fn true_edges(dataset: &dyn Dataset) -> Option<Vec<Edge>> {
    let graph = dataset.true_graph()?;
    Some(strongest(&graph, possible_edges(graph.len())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_strongest_edges_come_first_scaled_to_the_strongest() {
        let graph = vec![
            vec![9.0, 1.0, 4.0],
            vec![2.0, 0.0, 0.0],
            vec![0.5, 4.0, 7.0],
        ];
        let shown = strongest(&graph, 3);
        let pairs: Vec<(usize, usize)> = shown.iter().map(|e| (e.parent, e.child)).collect();
        // The diagonal (9, 7) is not an edge; ties go to the earlier pair.
        assert_eq!(pairs, [(0, 2), (2, 1), (1, 0)]);
        assert_eq!(shown[0].strength, 1.0);
        assert_eq!(shown[2].strength, 0.5);
        assert_eq!(
            strongest(&graph, 100).len(),
            5,
            "zero weights are not edges"
        );
        assert_eq!((possible_edges(6), default_shown(6)), (30, 5));
    }

    #[test]
    fn true_graphs_are_known_for_quad_and_scenes() {
        use intervene::data::DatasetKind;
        let edges = |kind: DatasetKind| true_edges(kind.dataset());
        let quad = edges(DatasetKind::QuadDependent).unwrap();
        assert!(quad.contains(&Edge {
            parent: 1,
            child: 0,
            strength: 1.0
        }));
        assert_eq!(edges(DatasetKind::QuadIndependent), Some(vec![]));
        assert!(!edges(DatasetKind::Scenes).unwrap().is_empty());
        assert_eq!(edges(DatasetKind::Mnist), None);
    }
}
