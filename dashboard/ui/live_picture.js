// A live picture for st.components.v2: the server draws the whole picture (SVG) every frame and this only
// puts it on the page. In the app's own DOM (no iframe, no shadow root), so its texts are page text.
// A click on an element with data-pick="N" sends N back to Python (the "picked" state); the button
// with data-fullscreen shows the picture on the whole screen.
export default function(component) {
    const { data, parentElement, setStateValue } = component;
    let box = parentElement.querySelector(':scope > div.zth-picture');
    if (!box) {
        box = document.createElement('div');
        box.className = 'zth-picture';
        parentElement.appendChild(box);
        box.addEventListener('click', e => {
            if (e.target.closest('[data-fullscreen]')) {
                document.fullscreenElement ? document.exitFullscreen() : box.requestFullscreen();
                return;
            }
            // state, not a trigger: a trigger sent while a live fragment reruns was lost; the count makes a
            // second click on the same datapoint a change too
            const p = e.target.closest('[data-pick]');
            if (p) setStateValue('picked', {point: +p.dataset.pick, n: (box.__clicks = (box.__clicks || 0) + 1)});
        });
    }
    if (box.__last !== data) {  // a rerun with the same frame changes nothing on screen
        box.__last = data;
        box.innerHTML = data;
    }
}
