fn main() {
    for (_, crd) in panoptes::resources::crds() {
        print!("{}", panoptes::resources::crd_yaml(&crd));
    }
}
